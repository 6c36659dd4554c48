"""Fault tests on real servers: nothing accepted is lost, nothing is delivered twice.

Every test runs several ``datafly serve --role ...`` processes against a real Redis and a real
PostgreSQL and a webhook stand-in that records what it accepted; events carry unique
messageIds, so a duplicate would show.
"""

from __future__ import annotations

import time
from typing import Any

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

        wait_until(victim_holds_a_batch, 30, "the victim to lease a batch", every=0.02)
        time.sleep(0.1)  # its requests are now in flight at the vendor
        victim.kill()
        sender.join(60)
        assert sender.error is None
        assert_exactly_once(hook, sender.accepted, 90, lambda: all_logs(servers))
        assert len(sender.accepted) == 1500
        refused = [r for r in hook.requests if r.status == 499]
        print(f"requests cut by the kill: {len(refused)}; accepted events: {len(hook.delivered())}")


def test_processor_restart(serve: Any, scaled_urls: dict[str, str]) -> None:
    with AnsweringWebhook().running_in_thread() as hook:
        config = cluster_config(scaled_urls, hook.url)
        gateway = serve(config, role="gateway")
        first = serve(config, role="processor")
        worker = serve(config, role="delivery")
        servers = [gateway, first, worker]
        sender = Sender([gateway.url], make_events(1200), batch=20, pause=0.01)
        sender.start()
        wait_until(lambda: len(hook.delivered()) > 100, 30, "delivery to start")
        first.kill()  # SIGKILL mid-stream: its shards stay locked until their lease runs out
        second = serve(config, role="processor")
        servers.append(second)
        wait_until(lambda: len(sender.accepted) > 800, 60, "more traffic")
        second.stop()  # a clean stop hands the shards over at once
        third = serve(config, role="processor")
        servers.append(third)
        sender.join(90)
        assert sender.error is None
        assert_exactly_once(hook, sender.accepted, 90, lambda: all_logs(servers))


def test_two_gateways_at_once(serve: Any, scaled_urls: dict[str, str]) -> None:
    with AnsweringWebhook().running_in_thread() as hook:
        config = cluster_config(scaled_urls, hook.url)
        gateways = [serve(config, role="gateway") for _ in range(2)]
        processors = [serve(config, role="processor") for _ in range(2)]
        worker = serve(config, role="delivery")
        servers = [*gateways, *processors, worker]
        one, two = make_events(800, "one"), make_events(800, "two")
        # the same events again, through the other gateway, some under another visitor (another shard)
        again = [dict(e, anonymousId=f"elsewhere-{i}") if i % 2 else e for i, e in enumerate(one[:200])]
        senders = [
            Sender([gateways[0].url], one, batch=20),
            Sender([gateways[1].url], two, batch=20),
            Sender([gateways[1].url, gateways[0].url], again, batch=10),
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(90)
            assert sender.error is None
        expected = [e["messageId"] for e in one + two]
        assert_exactly_once(hook, expected, 90, lambda: all_logs(servers))
        assert all(s == 200 for sender in senders for s in sender.statuses)


def test_redis_restart(own_servers: tuple[RedisServer, PostgresServer], serve: Any) -> None:
    redis_server, postgres = own_servers
    urls = scaled_config(redis_server, postgres)
    with AnsweringWebhook(hold=0.05).running_in_thread() as hook:
        config = cluster_config(urls, hook.url)
        gateway = serve(config, role="gateway")
        processor = serve(config, role="processor")
        worker = serve(config, role="delivery")
        servers = [gateway, processor, worker]
        sender = Sender([gateway.url], make_events(1500), batch=20, pause=0.01)
        sender.start()
        wait_until(lambda: len(sender.accepted) > 400, 30, "traffic")
        redis_server.kill()  # SIGKILL: only what was fsynced survives
        wait_until(lambda: status_of(gateway.url + "/readyz") == 503, 10, "the gateway to report not ready")
        assert status_of(worker.url + "/readyz") == 503
        time.sleep(2)
        redis_server.start()  # same port, same data directory
        wait_until(lambda: status_of(gateway.url + "/readyz") == 200, 20, "the gateway to be ready again")
        sender.join(120)
        assert sender.error is None
        assert (
            503 in sender.statuses
        )  # the gateway refused while Redis was away, and nothing of those was lost
        assert_exactly_once(hook, sender.accepted, 120, lambda: all_logs(servers))
        assert "Redis at" in gateway.log() and "reachable again" in gateway.log()


def test_postgres_unavailable_while_ingesting(
    serve: Any, own_servers: tuple[RedisServer, PostgresServer]
) -> None:
    redis_server, postgres = own_servers
    urls = scaled_config(redis_server, postgres)
    with AnsweringWebhook().running_in_thread() as hook:
        config = cluster_config(urls, hook.url)
        gateway = serve(config, role="gateway")
        processor = serve(config, role="processor")
        worker = serve(config, role="delivery")
        servers = [gateway, processor, worker]
        sender = Sender([gateway.url], make_events(1200), batch=20, pause=0.01)
        sender.start()
        wait_until(lambda: len(sender.accepted) > 200, 30, "traffic")
        postgres.stop()
        down_at = len(sender.accepted)
        readiness = []
        for _ in range(8):
            time.sleep(0.5)
            readiness.append(status_of(gateway.url + "/readyz"))
        delivered_while_down = len(hook.delivered())
        accepted_while_down = len(sender.accepted) - down_at
        postgres.start()
        sender.join(90)
        assert sender.error is None
        assert all(s == 200 for s in sender.statuses)  # ingestion never noticed
        assert set(readiness) == {200}
        assert accepted_while_down > 0 and delivered_while_down > 0
        assert_exactly_once(hook, sender.accepted, 90, lambda: all_logs(servers))
        # the delivery log caught up from the sink once PostgreSQL was back
        import asyncio

        from datafly.store.scaled.postgres import PostgresStore

        async def logged() -> set[str]:
            store = PostgresStore(urls["storage"])
            try:
                rows = await store.delivery_log("hook", None, 100_000)
            finally:
                await store.close()
            return {m for r in rows if r["outcome"] == "done" for m in r["message_ids"]}

        wait_until(
            lambda: asyncio.run(logged()) >= set(sender.accepted), 30, "the delivery log", every=0.5
        )
