"""Real ``redis-server`` and PostgreSQL on loopback for the scale-out tests (no mocks).

Each server runs from Debian's packages (``redis-server``, ``postgresql``) on a free port with
its data under a fresh temporary directory. PostgreSQL refuses to run as root, so as root it runs
as the ``postgres`` system user (created by the Debian package).

Other suites get a scaled config with :func:`scaled_config` (servers started once per test
process, a fresh Redis database and a fresh PostgreSQL database per call)::

    from scaled.servers import scaled_config
    config = {"sources": [...], **scaled_config()}
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "RedisServer", "free_port", "have_servers", "scaled_config", "shared_servers"]

PG_BIN = Path(os.environ.get("DATAFLY_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PG_PASSWORD = "datafly-test-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def have_servers() -> bool:
    return os.path.exists(REDIS_SERVER) and (PG_BIN / "postgres").exists()


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start:\n{log.read_text(errors='replace')}")


class RedisServer:
    """``redis-server`` with the durable settings of docs/scaling.md (AOF, fsync always)."""

    def __init__(self, appendfsync: str = "always", base: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="datafly-redis-", dir=base))
        self.port = free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
            "--maxmemory-policy", "noeviction", "--protected-mode", "no", "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_port(self.port, 15, self.proc, self.log_path)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL 15 cluster, password authentication on 127.0.0.1 (user ``datafly``)."""

    def __init__(self, base: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="datafly-pg-", dir=base))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "datafly"
        self.password = PG_PASSWORD
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "postgres.log"
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str]) -> None:
        subprocess.run(args, check=True, capture_output=True, **self._as)

    def init(self) -> None:
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password)
        if self._as:
            os.chown(pwfile, self._as["user"], self._as["group"])
        self._run([
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        ])  # fmt: skip
        pwfile.unlink()

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self.init()
        log = open(self.log_path, "ab")  # noqa: SIM115
        args = [
            str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "shared_buffers=64MB",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **self._as)
        _wait_port(self.port, 30, self.proc, self.log_path)
        self._wait_accepting()
        return self

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres is not accepting connections")

    def create_database(self, name: str) -> str:
        self._run([
            str(PG_BIN / "createdb"),
            "-h", str(self.dir), "-p", str(self.port), "-U", self.user, name,
        ])  # fmt: skip
        return self.url(name)

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT is PostgreSQL's fast shutdown (connections are cut, nothing committed is lost)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class _Shared:
    def __init__(self) -> None:
        self.redis: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        self.next_db = 0

    def ensure(self) -> tuple[RedisServer, PostgresServer]:
        if self.redis is None:
            self.redis = RedisServer().start()
            atexit.register(self.redis.cleanup)
        if self.postgres is None:
            self.postgres = PostgresServer().start()
            atexit.register(self.postgres.cleanup)
        return self.redis, self.postgres


_shared = _Shared()


def shared_servers() -> tuple[RedisServer, PostgresServer]:
    """One Redis and one PostgreSQL per test process, started on first use."""
    return _shared.ensure()


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def scaled_config(
    redis_server: RedisServer | None = None, postgres: PostgresServer | None = None
) -> dict[str, str]:
    """``{"storage": "postgresql://...", "queue": "redis://..."}`` naming a fresh database on each.

    Redis databases 1..15 are handed out in turn and flushed; each call creates a new PostgreSQL
    database. Without arguments the shared servers are used.
    """
    if redis_server is None or postgres is None:
        shared_redis, shared_pg = shared_servers()
        redis_server = redis_server or shared_redis
        postgres = postgres or shared_pg
    _shared.next_db = _shared.next_db % 15 + 1
    queue = redis_server.url(_shared.next_db)
    flush_redis(queue)
    storage = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    return {"storage": storage, "queue": queue}


def stop_quietly(*servers: RedisServer | PostgresServer) -> None:
    for server in servers:
        with contextlib.suppress(Exception):
            server.cleanup()
