"""The ids the ad platforms match on (pure): click ids from page URLs with the time each was first
seen, the site's vendor cookies remembered and bounded, Meta's _fbp generated once and _fbc built
from the fbclid, and profiles stored before these fields still loading."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from datafly.errors import InvalidEvent
from datafly.processing.identity import (
    CLICK_IDS,
    COOKIE_NAMES,
    MAX_IDS,
    MAX_PREFIXED,
    MAX_VALUE,
    apply_identity,
    click_ids_in,
    cookie_allowed,
)
from datafly.processing.normalise import RequestInfo, normalise_event, validate_event
from datafly.processing.profile import Profile
from datafly.processing.timestamps import parse_ts

RECEIVED = 1_780_000_000.0  # 2026-05-28T20:26:40Z
INFO = RequestInfo("web", "203.0.113.5", "UA/1", "visitor-1", received_at=RECEIVED)
T0 = "2026-05-28T10:00:00Z"
T0_MS = int(parse_ts(T0) * 1000)  # type: ignore[operator]


def fixed_random(*values: int) -> Callable[[int, int], int]:
    draws: Iterator[int] = iter(values)

    def draw(low: int, high: int) -> int:
        value = next(draws)
        assert low <= value <= high
        return value

    return draw


def run(
    raw: dict[str, Any],
    profile: Profile,
    randint: Callable[[int, int], int] | None = None,
) -> dict[str, Any]:
    """Normalise as the gateway does, then apply identity as the processor does."""
    event = normalise_event({"timestamp": T0, **raw}, INFO)
    apply_identity(event, profile, randint=randint or fixed_random(1234567890))
    return event


def page(url: str, **context: Any) -> dict[str, Any]:
    return {"type": "page", "context": {"page": {"url": url}, **context}}


# -- click ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLICK_IDS)
def test_every_click_id_is_read_from_a_url_and_from_a_search_string(name: str) -> None:
    url = f"https://shop.example/land?utm_source=x&{name}=ID-{name}-1&other=2#frag"
    assert click_ids_in(normalise_event(page(url), INFO)) == {name: f"ID-{name}-1"}
    search = {"type": "track", "event": "A", "context": {"page": {"search": f"?a=1&{name}=S-{name}"}}}
    assert click_ids_in(normalise_event(search, INFO)) == {name: f"S-{name}"}
    bare = {"type": "track", "event": "A", "context": {"page": {"search": f"{name}=B"}}}
    assert click_ids_in(normalise_event(bare, INFO)) == {name: "B"}


def test_all_click_ids_of_one_landing_url() -> None:
    query = "&".join(f"{name}=v{i}" for i, name in enumerate(CLICK_IDS))
    found = click_ids_in(normalise_event(page(f"https://shop.example/?{query}&rtid=alias"), INFO))
    assert found == {name: f"v{i}" for i, name in enumerate(CLICK_IDS)}  # rclid's own name wins over rtid


def test_aliases_other_spellings_and_encoded_values() -> None:
    found = click_ids_in(
        normalise_event(page("https://shop.example/?rtid=R1&GCLID=G%2B1&sccid=S1&fbclid=a+b&ttclid="), INFO)
    )
    assert found == {"rclid": "R1", "gclid": "G+1", "ScCid": "S1", "fbclid": "a b"}  # empty ttclid: none


def test_a_page_events_properties_and_relative_urls() -> None:
    event = normalise_event(
        {
            "type": "page",
            "properties": {"url": "/land?gclid=G1"},
            "context": {"page": {"url": "https://s.example/"}},
        },
        INFO,
    )
    assert click_ids_in(event) == {"gclid": "G1"}


def test_a_url_without_click_ids_and_look_alikes() -> None:
    event = normalise_event(page("https://shop.example/?xgclid=1&notfbclid=2&q=gclid%3D3"), INFO)
    assert click_ids_in(event) == {}


def test_click_ids_the_page_passes_itself_win_and_are_bounded() -> None:
    given = {
        "gclid": "given",
        "custom_id": 7,
        "bad": {"x": 1},
        "flag": True,
        "long": "x" * (MAX_VALUE + 1),
        "rtid": "R",
    }
    event = normalise_event(
        {
            **page("https://s.example/?gclid=url"),
            "context": {"page": {"url": "https://s.example/?gclid=url"}, "click_ids": given},
        },
        INFO,
    )
    assert click_ids_in(event) == {"gclid": "given", "custom_id": "7", "rclid": "R"}


def test_click_ids_are_carried_on_with_their_first_seen_time() -> None:
    profile = Profile("v")
    run(
        page(
            "https://shop.example/?gclid=G1&fbclid=F1",
        ),
        profile,
    )
    later = run({"type": "track", "event": "Order Completed", "timestamp": "2026-05-28T10:30:00Z"}, profile)
    assert later["context"]["clickIds"] == {"gclid": "G1", "fbclid": "F1"}
    assert later["context"]["clickIdsAt"] == {"gclid": T0_MS, "fbclid": T0_MS}


def test_the_same_value_keeps_its_time_a_new_value_gets_a_new_one() -> None:
    profile = Profile("v")
    run(page("https://shop.example/?gclid=G1&ttclid=T1"), profile)
    again = run(
        {**page("https://shop.example/?gclid=G1&ttclid=T2"), "timestamp": "2026-05-28T11:00:00Z"}, profile
    )
    assert again["context"]["clickIds"] == {"gclid": "G1", "ttclid": "T2"}
    assert again["context"]["clickIdsAt"] == {"gclid": T0_MS, "ttclid": T0_MS + 3_600_000}


def test_a_timestamp_ahead_of_the_server_is_read_as_the_receipt_time() -> None:
    profile = Profile("v")
    event = run({**page("https://shop.example/?gclid=G1"), "timestamp": "2030-01-01T00:00:00Z"}, profile)
    assert event["context"]["clickIdsAt"] == {"gclid": int(RECEIVED * 1000)}
    assert event["context"]["cookies"]["_fbp"] == f"fb.1.{int(RECEIVED * 1000)}.1234567890"


def test_at_most_thirty_click_ids_per_visitor() -> None:
    profile = Profile("v")
    run(
        {
            "type": "track",
            "event": "A",
            "context": {"clickIds": {f"id{i}": str(i) for i in range(MAX_IDS + 5)}},
        },
        profile,
    )
    event = run(
        {"type": "track", "event": "B", "context": {"clickIds": {"id0": "new", "another": "x"}}}, profile
    )
    assert len(event["context"]["clickIds"]) == MAX_IDS
    assert event["context"]["clickIds"]["id0"] == "new" and "another" not in event["context"]["clickIds"]


# -- cookies ---------------------------------------------------------------------------------


def test_cookies_are_remembered_latest_wins_and_only_vendor_cookies() -> None:
    profile = Profile("v")
    sent = {
        "_fbp": "fb.1.1.111",
        "_ga": "GA1.1.123.456",
        "_ga_ABC123": "GS1.1.1.1.1.1.1.0",
        "_ttp": "tt-1",
        "session_secret": "s3cret",
        "_gcl_aw": "GCL.1.G1",
    }
    run({"type": "page", "context": {"cookies": sent}}, profile)
    later = run({"type": "track", "event": "A", "context": {"cookies": {"_ttp": "tt-2"}}}, profile)
    assert later["context"]["cookies"] == {
        "_fbp": "fb.1.1.111",
        "_ga": "GA1.1.123.456",
        "_ga_ABC123": "GS1.1.1.1.1.1.1.0",
        "_ttp": "tt-2",
        "_gcl_aw": "GCL.1.G1",
    }
    assert "session_secret" not in orjson.dumps(profile).decode()


def test_cookie_values_that_are_not_short_strings_are_dropped() -> None:
    profile = Profile("v")
    event = run(
        {
            "type": "track",
            "event": "A",
            "context": {
                "cookies": {
                    "_fbp": 12,
                    "_ga": "",
                    "_ttp": "x" * (MAX_VALUE + 1),
                    "_scid": None,
                    "_epik": ["e"],
                    "li_fat_id": "L1",
                }
            },
        },
        profile,
    )
    assert event["context"]["cookies"] == {"li_fat_id": "L1", "_fbp": f"fb.1.{T0_MS}.1234567890"}


def test_at_most_28_cookies_per_visitor() -> None:
    profile = Profile("v")
    containers = {f"_ga_C{i}": f"GS{i}" for i in range(MAX_PREFIXED + 10)}
    run({"type": "track", "event": "A", "context": {"cookies": containers}}, profile)
    assert len(profile.cookies) == MAX_PREFIXED + 1  # and the generated _fbp
    fixed = {name: "v-" + name for name in COOKIE_NAMES}
    run(
        {"type": "track", "event": "B", "context": {"cookies": {"_ga_C0": "new", "_ga_Z": "z", **fixed}}},
        profile,
    )
    assert profile.cookies["_ga_C0"] == "new" and "_ga_Z" not in profile.cookies
    assert profile.cookies["_fbp"] == "v-_fbp"
    assert len(profile.cookies) == MAX_PREFIXED + len(COOKIE_NAMES) <= 30


def test_the_allow_list() -> None:
    for name in (
        "_fbp",
        "_fbc",
        "_ga",
        "_ga_ABC123",
        "_ttp",
        "_gcl_aw",
        "_gcl_gb",
        "_gcl_dc",
        "_epik",
        "_scid",
        "_uetmsclkid",
        "li_fat_id",
    ):
        assert cookie_allowed(name), name
    for name in ("session_secret", "_gid", "ga", "_ga_" + "x" * 80, "PHPSESSID", "_fbp2"):
        assert not cookie_allowed(name), name


# -- Meta's fbp and fbc ----------------------------------------------------------------------


def test_fbp_is_generated_once_and_kept() -> None:
    profile = Profile("v")
    first = run(page("https://shop.example/"), profile, fixed_random(1234567890))
    second = run(
        {"type": "track", "event": "A", "timestamp": "2026-05-28T12:00:00Z"}, profile, fixed_random()
    )
    assert first["context"]["cookies"] == {"_fbp": f"fb.1.{T0_MS}.1234567890"}
    assert second["context"]["cookies"] == first["context"]["cookies"]
    assert "_fbc" not in second["context"]["cookies"]


def test_fbp_draws_ten_digits_by_default() -> None:
    profile = Profile("v")
    event = normalise_event({"type": "track", "event": "A"}, INFO)
    apply_identity(event, profile)
    _, _, ms, digits = event["context"]["cookies"]["_fbp"].split(".")
    assert ms == str(int(RECEIVED * 1000)) and len(digits) == 10 and digits.isdigit()


def test_the_sites_own_fbp_wins_and_none_is_generated() -> None:
    profile = Profile("v")
    event = run({"type": "page", "context": {"cookies": {"_fbp": "fb.1.99.42"}}}, profile, fixed_random())
    assert event["context"]["cookies"] == {"_fbp": "fb.1.99.42"}


def test_fbc_is_built_from_the_fbclid_and_its_first_seen_time_and_kept() -> None:
    profile = Profile("v")
    landing = run(page("https://shop.example/?fbclid=IwAR-abc"), profile)
    order = run({"type": "track", "event": "Order Completed", "timestamp": "2026-05-28T10:45:00Z"}, profile)
    again = run(
        {**page("https://shop.example/?fbclid=IwAR-abc"), "timestamp": "2026-05-28T11:00:00Z"}, profile
    )
    fbc = f"fb.1.{T0_MS}.IwAR-abc"
    assert landing["context"]["cookies"]["_fbc"] == fbc
    assert order["context"]["cookies"] == landing["context"]["cookies"] == again["context"]["cookies"]


def test_a_new_fbclid_makes_a_new_fbc() -> None:
    profile = Profile("v")
    run(page("https://shop.example/?fbclid=F1"), profile)
    second = run({**page("https://shop.example/?fbclid=F2"), "timestamp": "2026-05-28T12:00:00Z"}, profile)
    assert second["context"]["cookies"]["_fbc"] == f"fb.1.{T0_MS + 7_200_000}.F2"


def test_the_sites_own_fbc_is_kept_unless_a_newer_click_replaces_it() -> None:
    profile = Profile("v")
    mine = "fb.1.1700000000000.F1"
    event = run(
        {
            **page("https://shop.example/?fbclid=F1"),
            "context": {"page": {"url": "https://shop.example/?fbclid=F1"}, "cookies": {"_fbc": mine}},
        },
        profile,
    )
    assert event["context"]["cookies"]["_fbc"] == mine
    # a cookie set by the pixel for a click we never saw in a URL is not overwritten
    later = run({"type": "track", "event": "A", "context": {"cookies": {"_fbc": "fb.1.1.OTHER"}}}, profile)
    assert later["context"]["cookies"]["_fbc"] == "fb.1.1.OTHER"
    # a new click in the URL: the stale cookie the page still had is replaced
    landing = run(
        {
            **page("https://shop.example/?fbclid=F3"),
            "timestamp": "2026-05-28T12:00:00Z",
            "context": {
                "page": {"url": "https://shop.example/?fbclid=F3"},
                "cookies": {"_fbc": "fb.1.1.OTHER"},
            },
        },
        profile,
    )
    assert landing["context"]["cookies"]["_fbc"] == f"fb.1.{T0_MS + 7_200_000}.F3"


# -- profiles --------------------------------------------------------------------------------


def test_a_profile_stored_before_these_fields_loads_and_gains_them() -> None:
    old = orjson.dumps(
        {
            "anonymous_id": "v",
            "user_id": "u1",
            "traits": {},
            "click_ids": {"rclid": "R1"},
            "session_id": "s",
            "session_number": 2,
            "last_seen": 1.0,
            "page_sessions": {},
            "field_of_a_newer_version": 1,
        }
    )
    profile = Profile.from_json("v", old)
    assert profile.click_ids == {"rclid": "R1"} and profile.cookies == {} and profile.click_ids_at == {}
    event = run({"type": "track", "event": "A"}, profile)
    assert event["context"]["clickIds"] == {"rclid": "R1"}
    assert event["context"]["clickIdsAt"] == {"rclid": T0_MS}  # known from now on
    assert Profile.from_json("v", orjson.dumps(profile)) == profile


def test_a_stored_profile_with_cookies_of_the_wrong_shape_starts_afresh() -> None:
    profile = Profile.from_json("v", orjson.dumps({"anonymous_id": "v", "cookies": ["x"]}))
    assert profile == Profile("v")


def test_the_profile_round_trips_with_the_new_fields() -> None:
    profile = Profile("v")
    run(
        {
            **page("https://shop.example/?fbclid=F1&gclid=G1"),
            "context": {
                "page": {"url": "https://shop.example/?fbclid=F1&gclid=G1"},
                "cookies": {"_ga": "GA1.1.1.2"},
            },
        },
        profile,
    )
    assert Profile.from_json("v", orjson.dumps(profile)) == profile


# -- the gateway's check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"), list(itertools.product(["cookies", "clickIds", "click_ids"], ["x", [1], 3]))
)
def test_the_gateway_refuses_cookies_or_click_ids_that_are_not_objects(key: str, value: Any) -> None:
    with pytest.raises(InvalidEvent) as refused:
        validate_event({"type": "track", "event": "A", "context": {key: value}})
    assert f"context.{key} must be an object" in refused.value.message


def test_the_gateway_accepts_objects_and_null() -> None:
    validate_event({"type": "track", "event": "A", "context": {"cookies": {"_fbp": 1}, "clickIds": {}}})
    validate_event({"type": "track", "event": "A", "context": {"cookies": None, "click_ids": None}})
