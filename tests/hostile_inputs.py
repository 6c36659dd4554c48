"""Hypothesis strategies for what a hostile or buggy client sends the gateway.

Events are shaped like the events the pipeline reads (the fields it parses are there often, with
values that are right, wrong, extreme or odd), and anything else JSON can carry besides.
Shared by the pure property tests and the ones through a real server.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# JSON scalars as orjson reads them: ints within 64 bits (bigger ones it reads as floats)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Any]:
    """``good`` three times in four, else ``bad``: most events pass the gateway, so the processor
    meets their odd values; the rest test the gateway's refusals."""
    return st.one_of(good, good, good, bad)


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


timestamps = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from(
        [
            1e300, -1e300, 1e20, 1e15, 253402300800, 0, -1, 946684799, 946684800, 1e11, 99999999999,
            "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "0001-01-01", "9999-12-31",
            "2026-12-03T09:30:00Z", "2026-12-03T09:30:00.123+01:00", "2026-12-03", "", " ", "z", "now",
            "2026-02-30T00:00:00Z", "1999-12-31T23:59:59Z",
        ]
    ),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=30),
    json_values,
)
urls = st.one_of(
    st.sampled_from(
        [
            "http://[::1/?rclid=abc", "https://shop.example/p?rclid=r1&rtid=t", "http://[::1]:80/?rtid=x",
            "https://shop.example/?fbclid=F&gclid=G&ttclid=T&ScCid=S&epik=E&msclkid=M&li_fat_id=L&gbraid=B&wbraid=W",
            "?GCLID=upper&fbclid=&fbclid=second", "https://shop.example/?fbclid=" + "x" * 600,
            "https://[fe80::1%25eth0]/", "//x", "?rclid=only", "http://a:b@[/", "http://x:99999999/",
            "https://shop.example/?email=a@b.example", "javascript:alert(1)", "\r\nX: y", "http://é.example/ü?rclid=ß",
        ]
    ),
    st.text(max_size=60),
    st.text(max_size=20).map(lambda t: f"http://[{t}/?rclid=1"),
    json_values,
)
identifiers = mostly(st.one_of(st.text(max_size=300), st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
pages = st.fixed_dictionaries({}, optional={"url": urls, "referrer": urls, "search": urls, "path": st.text(max_size=20), "title": json_values})
contexts = st.fixed_dictionaries(
    {},
    optional={
        "page": mostly(pages),
        "session": mostly(
            st.fixed_dictionaries(
                {"id": identifiers}, optional={"number": st.one_of(st.integers(), st.floats(allow_nan=False), json_values)}
            )
        ),
        "consent": mostly(
            st.fixed_dictionaries({}, optional={"canonical": mostly(st.dictionaries(st.text(max_size=12), json_values)), "tcfString": json_values})
        ),
        "ip": st.one_of(st.sampled_from(["203.0.113.7", "::1", "1.2.3", "x\r\ny", "ü"]), json_values),
        "userAgent": st.one_of(st.text(max_size=60), json_values),
        "user_agent": json_values,
        "clickIds": st.one_of(
            st.dictionaries(st.sampled_from(["gclid", "fbclid", "ttclid", "rclid", "x"]), json_values, max_size=3),
            st.dictionaries(st.text(max_size=10), json_values, max_size=3),
            json_values,
        ),
        "cookies": mostly(
            st.dictionaries(st.sampled_from(["_fbp", "_fbc", "_ga", "_ga_ABC1", "_ttp", "_gcl_aw", "sid"]), json_values)
        ),
        "traits": mostly(st.dictionaries(st.sampled_from(["email", "phone", "Phone", "mobile", "x"]), json_values)),
    },
)
_types = st.sampled_from(["track", "page", "identify", "group"])
_names = st.text(min_size=1, max_size=30).filter(str.strip)
events = st.fixed_dictionaries(
    {  # mostly events the gateway takes, so that the processor sees the odd values
        "type": st.one_of(_types, _types, _types, json_values),
        "event": st.one_of(_names, _names, _names, st.text(max_size=210), json_values),
    },
    optional={
        "name": mostly(st.text(max_size=30)),
        "userId": identifiers,
        "user_id": identifiers,
        "anonymousId": identifiers,
        "messageId": identifiers,
        "groupId": identifiers,
        "timestamp": timestamps,
        "properties": mostly(
            st.fixed_dictionaries(
                {}, optional={"url": urls, "referrer": urls, "search": urls, "email": json_values, "revenue": json_values}
            )
        ),
        "traits": mostly(st.dictionaries(st.sampled_from(["email", "phone", "phoneNumber", "name"]), json_values)),
        "context": mostly(contexts),
    },
)
deep_events = st.tuples(events, st.integers(min_value=20, max_value=300)).map(
    lambda pair: {**pair[0], "properties": nested(pair[1])}
)
bodies = st.one_of(
    events,
    events,
    deep_events,
    st.fixed_dictionaries(
        {"batch": st.one_of(st.lists(events, min_size=1, max_size=4), json_values)},
        optional={"context": st.one_of(contexts, json_values), "writeKey": json_values},
    ),
    json_values,
)
