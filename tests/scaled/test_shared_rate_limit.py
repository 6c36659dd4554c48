"""A source's rate limit holds across gateways: the bucket lives in Redis."""

from __future__ import annotations

from typing import Any

from http_client import post

from .cluster import KEY, cluster_config


def test_two_gateways_share_one_budget(serve: Any, scaled_urls: dict[str, str]) -> None:
    config = cluster_config(scaled_urls, "http://127.0.0.1:9/unused")
    config["sources"][0]["rate_limit"] = 1  # a burst of 100 events, then one per second
    first = serve(config, role="gateway")
    second = serve(config, role="gateway")
    statuses = []
    for i in range(120):
        gateway = first if i % 2 == 0 else second
        statuses.append(post(f"{gateway.url}/v1/t?key={KEY}", {"event": "A"}).status)
    assert statuses.count(200) <= 102  # one shared burst (a token may refill while we send), not two
    assert statuses.count(429) >= 18
    assert 429 in statuses[::2] and 429 in statuses[1::2]  # both gateways refuse
