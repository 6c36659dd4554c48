"""The contract every destination folder implements.

A destination is sans-IO: it turns processed events into :class:`OutboundRequest` values and a
vendor's answer into one :class:`ItemOutcome` per event. The delivery worker does the sending,
the retrying and the bookkeeping.

Exception tree: none here. Formatting problems that concern one event are returned as
:class:`Skip` (recorded with their reason, never sent); the answer of a vendor is classified into
:class:`Outcome` values, never raised.
"""

from __future__ import annotations

import base64
import enum
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

Event = dict[str, Any]
Settings = Mapping[str, Any]


class Outcome(enum.Enum):
    DONE = "done"  # the vendor accepted the event
    RETRY = "retry"  # a passing failure: try again after a delay
    REJECTED = "rejected"  # the vendor refused this event: never retried, dead-lettered
    AUTH_FAILED = "auth_failed"  # credentials are wrong: never retried, dead-lettered with a hint


@dataclass(frozen=True)
class ItemOutcome:
    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None  # seconds the vendor asked us to wait (Retry-After)


@dataclass(frozen=True)
class Skip:
    """An event the destination will not send, with the reason shown to the user."""

    reason: str


@dataclass(frozen=True)
class SettingField:
    name: str
    required: bool = True
    secret: bool = False
    description: str = ""
    kind: str = "string"  # string | integer | boolean | mapping
    default: Any = None


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    events: Mapping[str, str]  # event key ("page", "identify", or a track event name, "*") -> mapping value


@dataclass(frozen=True)
class Item:
    """One queued event on its way to one integration."""

    id: str  # queue item id, unique per integration
    event: Event  # the processed, enriched event (see datafly.processing)
    mapping: str  # the mapping value for this event: a sitegroup, a conversionType, ...
    first_in_session: bool = False  # the first `page` routed to this integration in the session


@dataclass(frozen=True)
class Formatted:
    """The vendor payload of one item, produced by :meth:`Destination.format_item`."""

    item_id: str
    payload: Any


@dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    item_ids: tuple[str, ...]  # the items this request carries, in order

    def masked(self, secrets: Sequence[str]) -> dict[str, Any]:
        """A JSON-ready view of the request with every secret masked (for logs and the UI)."""
        return {
            "method": self.method,
            "url": mask_text(self.url, secrets),
            "headers": {k: mask_header(k, v, secrets) for k, v in self.headers.items()},
            "body": mask_text(self.body.decode("utf-8", "replace"), secrets) if self.body else None,
        }


@dataclass(frozen=True)
class VendorResponse:
    """What came back: an HTTP answer, or ``status == 0`` with ``error`` for a transport failure."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""
    latency_ms: float = 0.0

    def retry_after(self) -> float | None:
        value = next((v for k, v in self.headers.items() if k.lower() == "retry-after"), None)
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            import time
            from email.utils import parsedate_to_datetime

            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None


def mask_secret(value: str) -> str:
    """``abcd****`` for long secrets, ``****`` for short ones: never the whole value."""
    return value[:4] + "****" if len(value) >= 12 else "****"


def mask_text(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            text = text.replace(form, mask_secret(secret))
    return text


def mask_header(name: str, value: str, secrets: Sequence[str]) -> str:
    if name.lower() in ("authorization", "proxy-authorization"):
        scheme = value.split(" ", 1)[0]
        return f"{scheme} ****"
    return mask_text(value, secrets)


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def classify_status(response: VendorResponse, auth_hint: str = "") -> ItemOutcome:
    """The default reading of an HTTP answer, shared by destinations that have no special cases."""
    status = response.status
    if status == 0:
        return ItemOutcome(Outcome.RETRY, f"connection failed: {response.error}")
    if 200 <= status < 300:
        return ItemOutcome(Outcome.DONE)
    excerpt = response.body[:300].decode("utf-8", "replace")
    if status in (401, 403):
        return ItemOutcome(Outcome.AUTH_FAILED, f"{status}: {auth_hint or 'check the credentials'}")
    if status in (408, 425, 429) or status >= 500:
        return ItemOutcome(Outcome.RETRY, f"{status} {excerpt}".strip(), response.retry_after())
    return ItemOutcome(Outcome.REJECTED, f"{status} {excerpt}".strip())


class Destination:
    """Base class of a vendor destination. Subclasses live in ``destinations/<vendor>/``.

    Class attributes are data: the settings schema, the presets (loaded from ``presets.yaml``
    beside the module), batching bounds. Methods are pure.
    """

    vendor: ClassVar[str]
    title: ClassVar[str]
    settings_schema: ClassVar[tuple[SettingField, ...]]
    presets: ClassVar[Mapping[str, Preset]]
    default_endpoint: ClassVar[str] = ""
    max_batch: ClassVar[int] = 1  # events per request
    max_wait: ClassVar[float] = 0.0  # seconds to wait for a fuller batch

    @classmethod
    def secret_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in cls.settings_schema if f.secret)

    @classmethod
    def secrets_of(cls, settings: Settings) -> list[str]:
        return [str(settings[name]) for name in cls.secret_fields() if settings.get(name)]

    def endpoint(self, settings: Settings, override: str | None) -> str:
        return override or self.default_endpoint

    def format_item(self, item: Item, settings: Settings) -> Formatted | Skip:
        raise NotImplementedError

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        """Group formatted items into requests of at most :attr:`max_batch` items."""
        raise NotImplementedError

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        """One outcome for every item id of ``request``."""
        outcome = classify_status(response)
        return {item_id: outcome for item_id in request.item_ids}


def chunks(seq: Sequence[Formatted], size: int) -> list[Sequence[Formatted]]:
    return [seq[i : i + size] for i in range(0, len(seq), max(1, size))]


def event_key(event: Event) -> str:
    """The key an event is mapped by: ``page``, ``identify``, ``group``, or a track event's name."""
    kind = event.get("type", "")
    return str(event.get("event", "")) if kind == "track" else str(kind)


def load_presets(folder: str) -> dict[str, Preset]:
    """Read ``presets.yaml`` of a destination folder: ``{name: {description, events}}``."""
    import os

    import yaml

    with open(os.path.join(folder, "presets.yaml"), encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return {
        name: Preset(name=name, description=str(spec.get("description", "")), events=dict(spec["events"]))
        for name, spec in raw.items()
    }
