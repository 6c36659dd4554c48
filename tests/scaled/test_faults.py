"""Fault tests on real servers: nothing accepted is lost, nothing is delivered twice.

Every test runs several ``datafly serve --role ...`` processes against a real Redis and a real
PostgreSQL and a webhook stand-in that records what it accepted; events carry unique
messageIds, so a duplicate would show.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from .cluster import (
    AnsweringWebhook,
    Sender,
    assert_exactly_once,
    cluster_config,
    make_events,
    status_of,
    wait_until,
)
from .servers import PostgresServer, RedisServer, scaled_config


def all_logs(servers: list[Any]) -> str:
    return "\n".join(f"--- {s.role} :{s.port}\n{s.log()[-3000:]}" for s in servers)


def pending_by_consumer(queue_url: str, stream: str = "df:q:hook") -> dict[str, int]:
    client = redis.Redis.from_url(queue_url, decode_responses=True)
    try:
        summary = client.xpending(stream, "delivery")
    except redis.ResponseError:
        return {}
    finally:
        client.close()
    return {c["name"]: int(c["pending"]) for c in summary.get("consumers") or []}


def test_delivery_process_killed_mid_batch(serve: Any, scaled_urls: dict[str, str]) -> None:
    with AnsweringWebhook(hold=0.3).running_in_thread() as hook:
        config = cluster_config(scaled_urls, hook.url, batch_size=10)
        gateway = serve(config, role="gateway")
        processor = serve(config, role="processor")
        workers = [serve(config, role="delivery") for _ in range(3)]
        servers = [gateway, processor, *workers]
        victim = workers[0]
        assert victim.proc is not None
        sender = Sender([gateway.url], make_events(1500), batch=50)
        sender.start()

        def victim_holds_a_batch() -> bool:
            return any(
                f":{victim.proc.pid}:" in name and n > 0
                for name, n in pending_by_consumer(scaled_urls["queue"]).items()
            )  # type: ignore[union-attr]

        wait_until(victim_holds_a_batch, 30, "the victim to lease a batch", interval=0.02)
        time.sleep(0.1)  # its requests are now in flight at the vendor
        victim.kill()
        sender.join(60)
        assert sender.error is None
        assert_exactly_once(hook, sender.accepted, 90, lambda: all_logs(servers))
        assert len(sender.accepted) == 1500
        refused = [r for r in hook.requests if r.status == 499]
        print(f"requests cut by the kill: {len(refused)}; accepted events: {len(hook.delivered())}")
