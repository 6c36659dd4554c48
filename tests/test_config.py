"""The config file: parsing, ${ENV} substitution, validation messages with key paths."""

from __future__ import annotations

import pytest

from datafly.config import parse_config
from datafly.errors import ConfigError

CONTRACT_EXAMPLE = """
sources:
  - id: web
    key: dk_live_abc123
    origins: [https://shop.example.com]
integrations:
  - id: exactag-main
    vendor: exactag
    preset: default
    sources: [web]
    consent: [marketing]
    settings:
      campaign_code: ${EXACTAG_CAMPAIGN_CODE}
    endpoint: http://127.0.0.1:9100/s2s/pi.ashx
    events:
      Order Completed: conversion
storage: postgresql://datafly:${PGPASSWORD}@db:5432/datafly
queue: redis://redis:6379/0
delivery:
  max_attempts: 8
  initial_backoff: 1s
  max_backoff: 10m
  max_age: 24h
  timeout: 10s
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env or {})
    return info.value.problems


def test_the_contract_example_parses() -> None:
    config = parse_config(CONTRACT_EXAMPLE, {"EXACTAG_CAMPAIGN_CODE": "c" * 32, "PGPASSWORD": "pw"})
    integration = config.integrations[0]
    assert integration.settings["campaign_code"] == "c" * 32
    assert integration.sources == ("web",) and integration.consent == ("marketing",)
    assert config.storage == "postgresql://datafly:pw@db:5432/datafly"
    assert config.delivery.max_backoff == 600 and config.delivery.max_age == 86400
    assert integration.mapping()["Order Completed"] == "conversion"
    assert integration.mapping()["page"] == "pageview"


def test_a_missing_environment_variable_is_an_error_naming_the_key() -> None:
    found = problems(CONTRACT_EXAMPLE, {"PGPASSWORD": "pw"})
    assert found == [
        "integrations[0].settings.campaign_code: environment variable EXACTAG_CAMPAIGN_CODE is not set"
    ]


def test_a_quoted_substitution_stays_a_string() -> None:
    config = parse_config('sources: [{id: web, key: "${KEY}"}]\nintegrations: []\n', {"KEY": "12345"})
    assert config.sources[0].key == "12345"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour: blue", "colour: unknown key"),
        ("sources: [{id: web}]", "sources[0].key: required"),
        ("sources: [{id: web, key: k}, {id: web, key: j}]", "sources[1].id: duplicate source id 'web'"),
        ("sources: [{id: w, key: k, origins: [shop.example]}]", "sources[0].origins[0]: expected an origin"),
        ("integrations: [{id: x, vendor: nosuch}]", "integrations[0].vendor: unknown vendor 'nosuch'"),
        (
            "integrations: [{id: x, vendor: exactag, settings: {}}]",
            "integrations[0].settings.campaign_code: required",
        ),
        (
            "integrations: [{id: x, vendor: rokt, preset: huge, settings: {account_id: '1', api_key: rpub-key1, api_secret: rsec-secret1}}]",
            "integrations[0].preset: unknown preset 'huge'",
        ),
        (
            "integrations: [{id: x, vendor: exactag, settings: {campaign_code: cccccccccccccccccccccccccccccccc, extra: 1}}]",
            "integrations[0].settings.extra: unknown setting",
        ),
        (
            "integrations: [{id: x, vendor: exactag, sources: [nope], settings: {campaign_code: cccccccccccccccccccccccccccccccc}}]",
            "integrations[0].sources[0]: no source with id 'nope'",
        ),
        ("delivery: {timeout: soon}", "delivery.timeout: expected a duration"),
        ("delivery: {max_attempts: 0}", "delivery.max_attempts: expected an integer >= 1"),
        ("storage: mysql://x\nqueue: redis://r", "storage: expected postgresql://"),
        ("storage: postgresql://db/x", "queue: scale-out needs both"),
        ("processing: {phone_region: england}", "processing.phone_region"),
        ("gateway: {trusted_proxies: [nonsense]}", "gateway.trusted_proxies[0]"),
        ("sources: [\n  - id: web\n   key: broken", "invalid YAML"),
    ],
)
def test_each_problem_names_its_key_path(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_every_problem_is_reported_at_once() -> None:
    found = problems("colour: blue\ndelivery: {timeout: soon, max_attempts: -1}\nsources: [{id: a}]")
    assert len(found) == 4


def test_an_events_override_can_drop_a_preset_event() -> None:
    config = parse_config(
        "integrations: [{id: x, vendor: exactag, settings: {campaign_code: cccccccccccccccccccccccccccccccc}, events: {Product Viewed: null}}]",
        {},
    )
    assert "Product Viewed" not in config.integrations[0].mapping()


def test_boolean_and_integer_settings_may_come_from_the_environment() -> None:
    config = parse_config(
        "integrations:\n"
        "  - {id: r, vendor: rokt, settings: {account_id: '1', api_key: rpub-key1, api_secret: rsec-secret1, test: '${ROKT_TEST}'}}\n"
        "  - {id: w, vendor: webhook, settings: {url: 'http://h/x', batch_size: '${SIZE}'}}\n",
        {"ROKT_TEST": "true", "SIZE": "20"},
    )
    assert config.integrations[0].settings["test"] is True
    assert config.integrations[1].settings["batch_size"] == 20
    assert any(
        "expected a boolean" in p
        for p in problems(
            "integrations: [{id: r, vendor: rokt, settings: {account_id: '1', api_key: rpub-key1, api_secret: rsec-secret1, test: maybe}}]"
        )
    )
