"""GA4's validation rules, checked before sending (pure).

The Measurement Protocol answers 2xx to anything and silently drops what it cannot take; only its
validation server (``/debug/mp/collect``) says why, as ``validationMessages`` of
``{fieldPath, description, validationCode}``. This module applies the same rules locally, so an
event GA4 would drop is recorded as a refusal (a Skip with GA's code and a message) instead of
vanishing. Sources: the Measurement Protocol reference ("Reserved names", "Validation codes"),
"Send events" (limitations), "Send user properties" (reserved names) and the "Event collection
limits" help page (parameter value lengths and their page_* exceptions):

- event names and parameter names: at most 40 characters, letters, digits and ``_``, starting
  with a letter (NAME_INVALID); not a reserved event name (the reference's list: ``ad_click``,
  ``session_start``, ``screen_view``, ``user_engagement``, ...; ``page_view`` is not reserved for the
  Measurement Protocol, only for events created in GA's interface) nor a reserved prefix
  ``google_``, ``ga_``, ``firebase_`` (NAME_RESERVED);
- at most 25 parameters per event; at most 25 user properties (EXCEEDED_MAX_ENTITIES);
- parameter values: text, numbers or booleans (``items``: a list of objects); text at most 100
  characters, except ``page_location`` 1,000, ``page_referrer`` 420, ``page_title`` 300
  (VALUE_OUT_OF_BOUNDS);
- items: each an object with ``item_id`` or ``item_name`` (VALUE_REQUIRED), at most 200 per event,
  at most 10 parameters beyond GA's own item parameters, values as above;
- user properties: names at most 24 characters (reserved: ``first_open_time``,
  ``first_visit_time``, ``last_deep_link_referrer``, ``user_id``, ``first_open_after_install``,
  and the prefixes), values at most 36 characters;
- ``client_id`` required; ``user_id`` at most 256 characters; at most 25 events per request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_EVENTS",
    "RESERVED_EVENTS",
    "Message",
    "validate_event",
    "validate_request",
]

MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_NAME = 40
MAX_VALUE = 100
LONG_VALUES = {"page_location": 1000, "page_referrer": 420, "page_title": 300}
MAX_ITEMS = 200
MAX_CUSTOM_ITEM_PARAMS = 10
MAX_USER_PROPERTIES = 25
MAX_USER_PROPERTY_NAME = 24
MAX_USER_PROPERTY_VALUE = 36
MAX_USER_ID = 256
RESERVED_PREFIXES = ("google_", "ga_", "firebase_")
RESERVED_EVENTS = frozenset(
    {"ad_click", "ad_exposure", "ad_query", "ad_reward", "adunit_exposure", "app_clear_data", "app_exception",
     "app_install", "app_remove", "app_store_refund", "app_store_subscription_cancel",
     "app_store_subscription_convert", "app_store_subscription_renew", "app_update", "app_upgrade",
     "dynamic_link_app_open", "dynamic_link_app_update", "error", "first_open", "first_visit", "in_app_purchase",
     "notification_dismiss", "notification_foreground", "notification_open", "notification_receive",
     "notification_send", "os_update", "screen_view", "session_start", "user_engagement"}
)  # fmt: skip
RESERVED_USER_PROPERTIES = frozenset(
    {"first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id", "first_open_after_install"}
)
ITEM_PARAMS = frozenset(
    {"item_id", "item_name", "affiliation", "coupon", "discount", "index", "item_brand", "item_category",
     "item_category2", "item_category3", "item_category4", "item_category5", "item_list_id", "item_list_name",
     "item_variant", "location_id", "price", "quantity", "promotion_id", "promotion_name", "creative_name",
     "creative_slot"}
)  # fmt: skip
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Message:
    """One validation message, as GA4's validation server words it."""

    code: str  # VALUE_INVALID | VALUE_REQUIRED | NAME_INVALID | NAME_RESERVED | VALUE_OUT_OF_BOUNDS | ...
    field_path: str
    description: str

    def reason(self) -> str:
        return f"{self.code}: {self.description} ({self.field_path}); GA4 would drop it silently"


def _name_problem(kind: str, name: Any, path: str, limit: int = MAX_NAME) -> Message | None:
    if not isinstance(name, str) or not name:
        return Message("VALUE_REQUIRED", path, f"{kind} name is required")
    shown = name[:60]
    if len(name) > limit:
        return Message("NAME_INVALID", path, f"{kind} name [{shown}] is longer than {limit} characters")
    if not _NAME.match(name):
        return Message(
            "NAME_INVALID",
            path,
            f"{kind} name [{shown}] is invalid: names must start with an alphabetic character and "
            "contain only alpha-numeric characters and underscores",
        )
    if name.startswith(RESERVED_PREFIXES):
        return Message(
            "NAME_RESERVED", path, f"{kind} name [{shown}] uses a reserved prefix (google_, ga_, firebase_)"
        )
    return None


def _value_problem(name: str, value: Any, path: str, limit: int) -> Message | None:
    if isinstance(value, bool | int | float):
        return None
    if isinstance(value, str):
        if len(value) > limit:
            return Message(
                "VALUE_OUT_OF_BOUNDS",
                path,
                f"value of [{name}] is {len(value)} characters long, at most {limit}",
            )
        return None
    return Message("VALUE_INVALID", path, f"value of [{name}] must be text, a number or a boolean")


def _item_problems(items: Any, path: str) -> list[Message]:
    if not isinstance(items, list):
        return [Message("VALUE_INVALID", path, "items must be a list of objects")]
    if len(items) > MAX_ITEMS:
        return [Message("EXCEEDED_MAX_ENTITIES", path, f"{len(items)} items, at most {MAX_ITEMS}")]
    found: list[Message] = []
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            found.append(Message("VALUE_INVALID", where, "each item must be an object"))
            continue
        if not (item.get("item_id") or item.get("item_name")):
            found.append(
                Message("VALUE_REQUIRED", where, f"item at index [{index}] needs item_id or item_name")
            )
        custom = [key for key in item if key not in ITEM_PARAMS]
        if len(custom) > MAX_CUSTOM_ITEM_PARAMS:
            found.append(
                Message("EXCEEDED_MAX_ENTITIES", where, f"{len(custom)} custom item parameters, at most 10")
            )
        for key, value in item.items():
            problem = _name_problem("item parameter", key, f"{where}.{key}") or _value_problem(
                str(key), value, f"{where}.{key}", MAX_VALUE
            )
            if problem:
                found.append(problem)
    return found


def validate_event(event: Mapping[str, Any], index: int = 0) -> list[Message]:
    """Why GA4 would drop ``event`` (``{"name", "params"}``), as validation messages; [] when valid."""
    path = f"events[{index}]"
    name = event.get("name")
    problem = _name_problem("event", name, f"{path}.name")
    if problem:
        return [problem]
    if name in RESERVED_EVENTS:
        return [Message("NAME_RESERVED", f"{path}.name", f"event name [{name}] is reserved")]
    params = event.get("params", {})
    if not isinstance(params, Mapping):
        return [Message("VALUE_INVALID", f"{path}.params", "params must be an object")]
    found: list[Message] = []
    if len(params) > MAX_PARAMS:
        found.append(
            Message(
                "EXCEEDED_MAX_ENTITIES", f"{path}.params", f"{len(params)} parameters, at most {MAX_PARAMS}"
            )
        )
    for key, value in params.items():
        where = f"{path}.params.{key}"
        problem = _name_problem("parameter", key, where)
        if problem:
            found.append(problem)
        elif key == "items":
            found.extend(_item_problems(value, where))
        else:
            problem = _value_problem(key, value, where, LONG_VALUES.get(key, MAX_VALUE))
            if problem:
                found.append(problem)
    return found


def validate_request(body: Mapping[str, Any]) -> list[Message]:
    """Why GA4 would drop the request-level fields of ``body`` (client_id, user_id, user properties)."""
    found: list[Message] = []
    client = body.get("client_id")
    if not isinstance(client, str) or not client.strip():
        found.append(Message("VALUE_REQUIRED", "client_id", "client_id is required"))
    user = body.get("user_id")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_ID):
        found.append(
            Message(
                "VALUE_OUT_OF_BOUNDS", "user_id", f"user_id must be text of at most {MAX_USER_ID} characters"
            )
        )
    properties = body.get("user_properties")
    if properties is None:
        return found
    if not isinstance(properties, Mapping):
        return [*found, Message("VALUE_INVALID", "user_properties", "user_properties must be an object")]
    if len(properties) > MAX_USER_PROPERTIES:
        found.append(
            Message(
                "EXCEEDED_MAX_ENTITIES", "user_properties", f"{len(properties)} user properties, at most 25"
            )
        )
    for key, entry in properties.items():
        where = f"user_properties.{key}"
        problem = _name_problem("user property", key, where, MAX_USER_PROPERTY_NAME)
        if problem is None and key in RESERVED_USER_PROPERTIES:
            problem = Message("NAME_RESERVED", where, f"user property name [{key}] is reserved")
        if problem is None:
            value = entry.get("value") if isinstance(entry, Mapping) else None
            problem = (
                _value_problem(key, value, f"{where}.value", MAX_USER_PROPERTY_VALUE)
                if value is not None
                else None
            )
        if problem:
            found.append(problem)
    return found
