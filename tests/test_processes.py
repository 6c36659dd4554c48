"""The processes of ``datafly serve`` on embedded storage: the server itself, the inbox's fsync
helper, and with ``DATAFLY_PROCESSOR=process`` the processor in a process of its own. These tests
look at them from outside: what runs, what each one's death does, and that nothing accepted is
lost on the way."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from datafly.store.embedded.sqlite import TickCommitter
from e2e_support import wait_until
from standins import WebhookStandIn
from test_pipeline import hook_integration, make_config, send, wait_events

OWN_PROCESS = {"DATAFLY_PROCESSOR": "process"}


def children(pid: int) -> dict[int, str]:
    """Child processes of ``pid``: pid -> command line."""
    found: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended


def processor_pid(server: Any) -> int:
    def find() -> int | None:
        return next((p for p, cmd in children(server.proc.pid).items() if "spawn_main" in cmd), None)

    found: int = wait_until(find, what="the processor process")
    return found


def metric(server: Any, name: str) -> float:
    text = urllib.request.urlopen(f"{server.url}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_the_processor_runs_beside_the_gateway_and_reports_to_it(serve: Any) -> None:
    with WebhookStandIn().running_in_thread() as hook:
        server = serve(make_config(hook_integration("hook", hook.url, batch_size=10)), env=OWN_PROCESS)
        ids = send(server, *({"type": "track", "event": "E", "properties": {"n": n}} for n in range(30)))
        wait_events(hook, ids)
        pid = processor_pid(server)
        assert pid != server.proc.pid
        # the processor's counters reach the gateway's /metrics
        wait_until(lambda: metric(server, "datafly_events_processed_total") == 30, what="processed count")
        wait_until(lambda: metric(server, 'datafly_events_routed_total{integration="hook"}') == 30, what="routed")
        niceness = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        assert niceness > 0  # the gateway goes first when both want the same core


def test_a_processor_that_dies_is_started_again_and_loses_nothing(serve: Any) -> None:
    with WebhookStandIn().running_in_thread() as hook:
        server = serve(make_config(hook_integration("hook", hook.url, batch_size=20)), env=OWN_PROCESS)
        first = processor_pid(server)
        ids: list[str] = []
        for _ in range(10):
            ids += send(server, *({"type": "track", "event": "E"} for _ in range(20)))
        os.kill(first, signal.SIGKILL)
        ids += send(server, *({"type": "track", "event": "while it was down"} for _ in range(20)))
        second = wait_until(lambda: (p := processor_pid(server)) != first and p, what="a new processor")
        assert alive(second) and not alive(first)
        ids += send(server, {"type": "track", "event": "after"})
        wait_events(hook, ids, timeout=20)
        assert set(ids) <= set(hook.count_by_message_id())
        assert "the processor process ended" in server.log()


def test_the_helpers_end_with_a_killed_gateway_and_a_restart_loses_nothing(serve: Any) -> None:
    with WebhookStandIn().running_in_thread() as hook:
        cfg = make_config(hook_integration("hook", hook.url, batch_size=20))
        server = serve(cfg, env=OWN_PROCESS)
        ids: list[str] = []
        for _ in range(10):
            ids += send(server, *({"type": "track", "event": "E"} for _ in range(20)))
        helpers = children(server.proc.pid)
        assert any("wal_sync" in cmd for cmd in helpers.values())  # the inbox's fsync helper
        assert any("spawn_main" in cmd for cmd in helpers.values())  # the processor
        server.kill()
        wait_until(lambda: not any(alive(p) for p in helpers), timeout=5, what="helpers gone with the gateway")
        again = serve(cfg, home=server.home)
        ids += send(again, {"type": "track", "event": "after restart"})
        wait_events(hook, ids, timeout=20)
        assert set(ids) <= set(hook.count_by_message_id())


def test_a_stop_sent_to_every_process_drains_through_the_gateway(serve: Any) -> None:
    """systemd's default stop sends SIGTERM to every process of the service at once."""
    with WebhookStandIn().running_in_thread() as hook:
        server = serve(make_config(hook_integration("hook", hook.url, batch_size=20)), env=OWN_PROCESS)
        ids = send(server, *({"type": "track", "event": "E"} for _ in range(20)))
        processor_pid(server)
        wait_until(lambda: metric(server, "datafly_events_processed_total") == 20, what="the processor at work")
        helpers = children(server.proc.pid)
        assert any("wal_sync" in cmd for cmd in helpers.values())
        for pid in helpers:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
        assert [cmd for pid, cmd in helpers.items() if not alive(pid)] == []  # they leave it to the gateway
        ids += send(server, {"type": "track", "event": "after the helpers were told to stop"})
        assert server.stop() == 0
        wait_until(lambda: not any(alive(pid) for pid in helpers), timeout=5, what="helpers gone with the gateway")
        assert set(ids) <= set(hook.count_by_message_id())
        assert "fsync helper ended" not in server.log() and "processor process ended" not in server.log()


# the inbox's fsync helper, directly ---------------------------------------------------------------
@pytest.fixture
def committer(tmp_path: Path) -> Any:
    path = str(tmp_path / "inbox.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE inbox (seq INTEGER PRIMARY KEY, body BLOB)")
    conn.close()
    return lambda: TickCommitter(path, "INSERT INTO inbox (body) VALUES (?)", "FULL")


def rows(committer: TickCommitter) -> int:
    count: int = committer.conn.execute("SELECT count(*) FROM inbox").fetchone()[0]
    return count


async def test_inserts_are_answered_after_the_helpers_fsync(committer: Any) -> None:
    inbox: TickCommitter = committer()
    try:
        await asyncio.gather(*(inbox.insert([(f"row {i}".encode(),)]) for i in range(100)))
        assert inbox._syncer is not None and inbox._syncer.running
        assert inbox.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the helper syncs
        for _ in range(5):  # later commits, each answered
            await inbox.insert([(b"more",)])
        assert rows(inbox) == 105 and not inbox._unsynced
    finally:
        inbox.close()


async def test_without_the_helper_the_committer_syncs_itself(committer: Any) -> None:
    inbox: TickCommitter = committer()
    try:
        await inbox.insert([(b"first",)])
        assert inbox._syncer is not None and inbox._syncer._process is not None
        inbox._syncer._process.kill()  # the helper dies
        inbox._syncer._process.wait()
        started = time.monotonic()
        answers = await asyncio.wait_for(
            asyncio.gather(*(inbox.insert([(b"after",)]) for _ in range(10))), 5
        )
        assert len(answers) == 10 and time.monotonic() - started < 5
        await inbox.insert([(b"later",)])
        assert inbox.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL from now on
        assert rows(inbox) == 12
    finally:
        inbox.close()


async def test_when_every_request_in_flight_waits_the_loop_waits_for_the_helper(tmp_path: Path, committer: Any) -> None:
    in_flight = [0]
    path = str(tmp_path / "inbox.db")
    inbox = TickCommitter(path, "INSERT INTO inbox (body) VALUES (?)", "FULL", lambda: in_flight[0])
    try:
        in_flight[0] = 3  # three requests in flight, all three inserting: nothing else to do
        await asyncio.gather(*(inbox.insert([(b"alone",)]) for _ in range(3)))
        assert inbox.waited_here == 1  # the loop waited for the helper's fsync on purpose
        assert inbox._syncer is not None and inbox._syncer.running
        in_flight[0] = 10  # others are still being read: the loop goes on while the helper syncs
        await asyncio.gather(*(inbox.insert([(b"busy",)]) for _ in range(3)))
        assert inbox.waited_here == 1
        assert rows(inbox) == 6 and not inbox._unsynced
    finally:
        inbox.close()


def test_by_default_every_role_runs_in_the_one_process(serve: Any) -> None:
    with WebhookStandIn().running_in_thread() as hook:
        server = serve(make_config(hook_integration("hook", hook.url)))
        ids = send(server, {"type": "track", "event": "E"})
        wait_events(hook, ids)
        helpers = children(server.proc.pid)
        assert [cmd for cmd in helpers.values() if "wal_sync" not in cmd] == []  # only the fsync helper
        assert any("wal_sync" in cmd for cmd in helpers.values())
