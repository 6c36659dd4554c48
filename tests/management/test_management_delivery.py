"""Delivery seen through management: the debugger stream, dead letters, replay, health, journey."""

from __future__ import annotations

import urllib.request
from typing import Any

from management_client import BASE_CONFIG, EventStream, login, order_completed, send_event, wait_until

from standins import RoktStandIn

KEY = "dk_test_web"


def test_debugger_dead_letters_replay_and_health(serve: Any) -> None:
    with RoktStandIn(api_key="rpub-good-key-123", api_secret="rsec-good-secret-456").running_in_thread() as rokt:
        server = serve(BASE_CONFIG)
        api = login(server.url)
        created = api.post("/api/integrations", {
            "id": "rokt-main", "vendor": "rokt", "preset": "retail", "consent": ["advertising"],
            "settings": {"account_id": "12345", "api_key": "rpub-good-key-123", "api_secret": "rsec-good-secret-456"},
            "endpoint": rokt.url,
        })
        assert created.status == 201, created.text
        stream = EventStream(server.url, api.token or "")
        assert stream.next() == {"stage": "hello"}

        assert send_event(server.url, KEY, order_completed("A1")) == 200
        received = stream.until(lambda e: e["stage"] == "received")
        assert received["message_id"] == "msg-A1" and received["event_name"] == "Order Completed"
        assert received["source_id"] == "web"
        assert "jane.doe@example.com" not in str(received)
        consent = stream.until(lambda e: e["stage"] == "consent")
        assert consent["decision"] == "granted" and consent["mapping"] == "purchase"
        answer = stream.until(lambda e: e["stage"] == "response")
        assert answer["status"] == 200 and answer["outcome"] == "done"
        assert answer["request"]["headers"]["Authorization"] == "Basic ****"
        assert "rsec-good-secret-456" not in str(stream.entries)
        assert rokt.wait_for_sync(1)[0].json()["events"][0]["conversionId"] == "A1"

        # no consent: filtered, and said so
        assert send_event(server.url, KEY, order_completed("A2", consent={"advertising": False})) == 200
        filtered = stream.until(lambda e: e["stage"] == "consent" and e["message_id"] == "msg-A2")
        assert filtered["decision"] == "filtered" and filtered["outcome"] == "filtered"

        # break the secret: 401 with the document's hint, a dead letter
        assert api.patch("/api/integrations/rokt-main", {"settings": {"api_secret": "rsec-wrong-000000"}}).status == 200
        assert send_event(server.url, KEY, order_completed("A3")) == 200
        failed = stream.until(lambda e: e["stage"] == "response" and e["message_id"] == "msg-A3")
        assert failed["status"] == 401 and failed["outcome"] == "auth_failed"
        assert "api_key (rpub-…) and api_secret (rsec-…)" in failed["reason"]
        dead = wait_until(lambda: api.get("/api/dead-letters").json()["dead_letters"])
        assert dead[0]["message_id"] == "msg-A3" and dead[0]["outcome"] == "auth_failed"
        assert "rsec-wrong-000000" not in api.get("/api/dead-letters").text
        journey = api.get("/api/events/msg-A3").json()
        assert [row["outcome"] for row in journey["log"]] == ["auth_failed"]
        assert journey["dead_letters"][0]["id"] == dead[0]["id"]

        # fix it, replay, delivered
        fixed = api.patch("/api/integrations/rokt-main", {"settings": {"api_secret": "rsec-good-secret-456"}})
        assert fixed.status == 200
        assert api.post(f"/api/dead-letters/{dead[0]['id']}/replay").json() == {"replayed": 1}
        delivered = stream.until(lambda e: e["stage"] == "response" and e["message_id"] == "msg-A3")
        assert delivered["status"] == 200 and delivered["outcome"] == "done"
        assert api.get("/api/dead-letters").json()["dead_letters"] == []
        assert [e["conversionId"] for e in rokt.accepted_events] == ["A1", "A3"]

        health = wait_until(lambda: next(
            (h for h in api.get("/api/health").json()["integrations"]
             if h["integration_id"] == "rokt-main" and h["sent"] == 2), None))
        assert health["failed"] == 1 and health["filtered"] == 1 and health["dead_lettered"] == 0
        assert health["p50_ms"] is not None and health["p99_ms"] >= health["p50_ms"]
        deliveries = api.get("/api/integrations/rokt-main/deliveries").json()["deliveries"]
        assert [d["outcome"] for d in deliveries] == ["done", "auth_failed", "filtered", "done"]

        # discard, and the filters of the stream
        api.patch("/api/integrations/rokt-main", {"settings": {"api_secret": "rsec-wrong-again-0"}})
        for order in ("B1", "B2"):
            send_event(server.url, KEY, order_completed(order))
        wait_until(lambda: len(api.get("/api/dead-letters?integration=rokt-main").json()["dead_letters"]) == 2)
        assert api.post("/api/dead-letters/replay", {}).status == 400
        assert api.post("/api/dead-letters/discard", {"integration": "rokt-main"}).json() == {"discarded": 2}
        assert api.delete("/api/dead-letters/999999").status == 404
        stream.close()

        only_filtered = EventStream(server.url, api.token or "", "?outcome=filtered&source=web")
        only_filtered.next()
        send_event(server.url, KEY, order_completed("C1"))
        send_event(server.url, KEY, order_completed("C2", consent={}))
        entry = only_filtered.until(lambda e: True)
        assert entry["message_id"] == "msg-C2" and entry["outcome"] == "filtered"
        only_filtered.close()


def test_metrics_and_probes(server: Any) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        with urllib.request.urlopen(server.url + path, timeout=5) as answer:
            assert answer.status == 200
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as answer:
        assert b"datafly_delivery_outcomes" in answer.read()
