"""Schemathesis against the live server's /api/openapi.json, logged in with an API token.

What it tries: every operation of the document except the two that cannot be fuzzed in one
session (``GET /api/debugger/stream`` never ends; ``POST /api/logout`` would revoke the token the
fuzzer uses), each with ``FUZZ_EXAMPLES`` positive cases (bodies, path and query parameters that
follow the document) and as many negative ones (that break it: wrong types, missing fields,
unknown values, odd path parameters). Hypothesis runs derandomized, so a run is repeatable;
``DATAFLY_FUZZ_EXAMPLES`` raises the count.

Path parameters are either generated or, half of the time, the id of an object that exists
(the config file's ``exactag-config`` and ``web``, and a webhook, a Rokt integration and a
source created through the API first), so the operations behind the 404 run too; DELETE
operations run last.

What it checks on every answer: no 5xx; the status is documented for the operation; the content
type is the documented one; the body matches the documented schema; documented headers are
present. The server runs without ``management.allow_private_endpoints``, so integrations the
fuzzer posts go through the endpoint checks too. The whole run stays well under two minutes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from management_client import ADMIN_PASSWORD, BASE_CONFIG, Client

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

FUZZ_EXAMPLES = int(os.environ.get("DATAFLY_FUZZ_EXAMPLES", "25"))
SKIPPED = {("GET", "/api/debugger/stream"), ("POST", "/api/logout")}
KNOWN = {
    "integration_id": ["exactag-config", "hook", "rokt"],
    "source_id": ["web", "app"],
    "vendor": ["exactag", "rokt", "webhook"],
}
PUBLIC = "http://93.184.216.34"  # a global address: accepted, and never sent to (no event is sent)


def test_the_live_api_answers_as_its_openapi_document_says(serve: Callable[..., Any]) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    config = {key: value for key, value in BASE_CONFIG.items() if key != "management"}
    server = serve(config)
    answer = Client(server.url).post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert answer.status == 200, answer.text
    session = Client(server.url, answer.json()["token"])
    script = session.post("/api/tokens", {"name": "schemathesis"})  # survives the fuzzer's own login attempts
    assert script.status == 201, script.text
    auth = {"Authorization": f"Bearer {script.json()['token']}"}
    for body in (
        {"vendor": "webhook", "id": "hook", "settings": {"url": PUBLIC + "/hook", "secret": "hook-secret-1"}},
        {"vendor": "rokt", "id": "rokt", "endpoint": PUBLIC + "/v1/conversions", "consent": ["advertising"],
         "settings": {"account_id": "12345", "api_key": "rpub-fuzz-key-1", "api_secret": "rsec-fuzz-secret-1"}},
    ):
        assert session.post("/api/integrations", body).status == 201
    assert session.post("/api/sources", {"id": "app"}).status == 201

    schema = schemathesis.openapi.from_url(server.url + "/api/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    failures: list[str] = []
    tried: dict[str, int] = {}
    statuses: dict[str, set[int]] = {}

    def known_ids(strategy: Any) -> Any:
        def pick(drawn: tuple[Any, int]) -> Any:
            case, choice = drawn
            for name, ids in KNOWN.items():
                if name in (case.path_parameters or {}) and choice < len(ids):
                    case.path_parameters[name] = ids[choice]
            return case

        return st.tuples(strategy, st.integers(0, 2 * len(KNOWN["integration_id"]) - 1)).map(pick)

    def fuzz(label: str, strategy: Any) -> None:
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            tried[label] = tried.get(label, 0) + 1
            try:
                response = case.call_and_validate(base_url=server.url, headers=auth, checks=checks, timeout=15)
                statuses.setdefault(label, set()).add(response.status_code)
            except Exception as exc:  # every failure is collected; the run goes on
                failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:600]}")

        run()

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = known_ids(operation.as_strategy(generation_mode=mode))
            fuzz(f"{operation.method.upper()} {operation.path} ({mode.value})", strategy)
    assert len(tried) >= 50, sorted(tried)  # both modes of (nearly) every operation
    assert sum(tried.values()) >= len(tried) * 5, tried
    succeeded = {label for label, codes in statuses.items() if any(200 <= code < 300 for code in codes)}
    assert len(succeeded) >= 30, statuses  # the fuzzer got past validation, not only into 4xx
    assert not failures, "\n\n".join(failures[:15]) + f"\n\n({len(failures)} failures)"
    # the fuzzer's token still works: nothing it sent revoked it
    assert Client(server.url, auth["Authorization"].removeprefix("Bearer ")).get("/api/me").status == 200
