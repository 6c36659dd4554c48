"""The contract every destination folder implements.

A destination is sans-IO: it turns processed events into :class:`OutboundRequest` values and a
vendor's answer into one :class:`ItemOutcome` per event. The delivery worker does the sending,
the retrying and the bookkeeping.

Exception tree: none here. Formatting problems that concern one event are returned as
:class:`Skip` (recorded with their reason, never sent); the answer of a vendor is classified into
:class:`Outcome` values, never raised. A vendor that refuses a whole batch for one bad event
answers :attr:`Outcome.SPLIT` for its items; the worker finds the bad ones by halving the batch.
"""

from __future__ import annotations

import base64
import copy
import enum
import functools
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from datafly.destinations.fields import is_empty, parse_source, resolve_path
from datafly.destinations.rules import SECRET_MIN_LENGTH, header_problems, text_problem, url_problem
from datafly.events import event_key as event_key  # (re-exported: destinations map events by it)

Event = dict[str, Any]
Settings = Mapping[str, Any]


class Outcome(enum.Enum):
    DONE = "done"  # the vendor accepted the event
    RETRY = "retry"  # a passing failure: try again after a delay
    REJECTED = "rejected"  # the vendor refused this event: never retried, dead-lettered
    AUTH_FAILED = "auth_failed"  # credentials are wrong: never retried, dead-lettered with a hint
    # the request failed as a whole because of some of its items (Meta refuses a batch for one bad
    # event): they are sent again in halves, not counted as an attempt; one item alone is REJECTED
    SPLIT = "split"


@dataclass(frozen=True)
class ItemOutcome:
    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None  # seconds the vendor asked us to wait (Retry-After)


@dataclass(frozen=True)
class AccessToken:
    """A short-lived credential a vendor issued (an OAuth2 access token), read by
    :meth:`Destination.read_token`; ``expires_in`` is its lifetime in seconds from its issue."""

    value: str
    expires_in: float


ACCESS_TOKEN_KEY = "_access_token"  # reserved settings key: the current access token, given to build_requests


@dataclass(frozen=True)
class Skip:
    """An event the destination will not send, with the reason shown to the user."""

    reason: str


@dataclass(frozen=True)
class SettingField:
    """One setting of a vendor: its type and the rules its value follows (see datafly.destinations.rules).

    ``min_length`` and ``pattern`` (a regular expression the whole text matches, also usable as
    an HTML form's ``pattern``) describe text; ``format_hint`` says the same in words. A secret
    has at least :data:`~datafly.destinations.rules.SECRET_MIN_LENGTH` characters whatever
    ``min_length`` says. ``format`` names a structured value: ``url`` (an http(s) URL with a
    host, a ``string``) or ``headers`` (extra request headers, a ``mapping``).
    """

    name: str
    required: bool = True
    secret: bool = False
    description: str = ""
    kind: str = "string"  # string | integer | boolean | mapping
    default: Any = None
    format: str = ""  # url | headers: rules of their own (see datafly.destinations.rules)
    min_length: int = 0
    pattern: str = ""
    format_hint: str = ""

    @property
    def least_length(self) -> int:
        """The shortest text this setting takes."""
        return max(self.min_length, SECRET_MIN_LENGTH if self.secret else 0)

    def problems(self, value: Any) -> list[str]:
        """Why ``value`` (already of the right kind) is not a valid value of this setting, or []."""
        if self.format == "url":
            found = url_problem(value)
            return [found] if found else []
        if self.format == "headers":
            return header_problems(value)
        if self.kind != "string" or isinstance(value, bool):
            return []
        text = str(value)
        problem = text_problem(text)
        if problem:
            return [problem]
        hint = f" ({self.format_hint})" if self.format_hint else ""
        if len(text) < self.least_length:
            return [f"too short: at least {self.least_length} characters{hint}"]
        if self.pattern and not re.fullmatch(self.pattern, text):
            return [f"not in the expected format{hint}"]
        return []


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


@functools.lru_cache(maxsize=256)
def _masked_forms(secret: str) -> tuple[tuple[str, re.Pattern[str] | None, str], ...]:
    masked = mask_secret(secret)
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    found: list[tuple[str, re.Pattern[str] | None, str]] = []
    for form in sorted(forms, key=len, reverse=True):
        alone = None
        if len(secret) < SECRET_MIN_LENGTH:
            alone = re.compile(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])")
        found.append((form, alone, masked))
    return tuple(found)


def mask_text(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret masked where it appears whole: raw or URL-encoded.

    Only the whole secret is replaced, never a part of it. A secret shorter than
    :data:`~datafly.destinations.rules.SECRET_MIN_LENGTH` (the settings rules refuse those; an
    integration stored before them may hold one) is replaced only where it stands alone, not
    next to a letter or digit: a one-letter secret must not rewrite that letter in every word,
    which would give it away.
    """
    for secret in secrets:
        if not secret:
            continue
        for form, alone, masked in _masked_forms(secret):
            if form in text:
                text = text.replace(form, masked) if alone is None else alone.sub(masked.replace("\\", r"\\"), text)
    return text


def mask_header(name: str, value: str, secrets: Sequence[str]) -> str:
    if name.lower() in ("authorization", "proxy-authorization"):
        scheme = value.split(" ", 1)[0]
        return f"{scheme} ****"
    return mask_text(value, secrets)


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


DONE = ItemOutcome(Outcome.DONE)  # (immutable: one instance serves every accepted item)


def classify_status(response: VendorResponse, auth_hint: str = "") -> ItemOutcome:
    """The default reading of an HTTP answer, shared by destinations that have no special cases."""
    status = response.status
    if status == 0:
        return ItemOutcome(Outcome.RETRY, f"connection failed: {response.error}")
    if 200 <= status < 300:
        return DONE
    excerpt = response.body[:300].decode("utf-8", "replace")
    if status in (401, 403):
        return ItemOutcome(Outcome.AUTH_FAILED, f"{status}: {auth_hint or 'check the credentials'}")
    if status in (408, 425, 429) or status >= 500:
        return ItemOutcome(Outcome.RETRY, f"{status} {excerpt}".strip(), response.retry_after())
    return ItemOutcome(Outcome.REJECTED, f"{status} {excerpt}".strip())


class Destination:
    """Base class of a vendor destination. Subclasses live in ``destinations/<vendor>/``.

    Class attributes are data: the settings schema, the presets (loaded from ``presets.yaml``
    beside the module), batching bounds; the UI copy is ``ui.yaml`` beside the module
    (:meth:`guide`). Methods are pure.

    A vendor that authorises with a short-lived access token (OAuth2, as Google Ads) describes
    how to get one, still without I/O: :meth:`token_request` builds the request to its token
    endpoint (None, the default: the vendor needs no token) and :meth:`read_token` reads the
    answer into an :class:`AccessToken`, or the :class:`ItemOutcome` the waiting items get
    (retry for a passing failure, auth failure with the token endpoint's reason). The delivery
    worker keeps the token (``datafly.delivery.tokens``: cached until shortly before it expires,
    one fetch at a time) and hands it to :meth:`build_requests` as
    ``settings[ACCESS_TOKEN_KEY]``; it is masked like a secret wherever a request is shown or
    stored. When the vendor answers 401, the worker fetches a fresh token and sends the same
    items once more before :meth:`classify` sees the answer.
    """

    vendor: ClassVar[str]
    title: ClassVar[str]
    settings_schema: ClassVar[tuple[SettingField, ...]]
    presets: ClassVar[Mapping[str, Preset]]
    default_endpoint: ClassVar[str] = ""
    max_batch: ClassVar[int] = 1  # events per request
    max_wait: ClassVar[float] = 0.0  # seconds to wait for a fuller batch
    # field-source overrides (``integrations[].fields``, see datafly.destinations.fields):
    fields_at: ClassVar[str | None] = None  # payload key holding the vendor fields; None: the payload
    reserved_fields: ClassVar[Mapping[str, str]] = {}  # field -> why an override is refused
    known_fields: ClassVar[tuple[str, ...]] = ()  # the vendor's field names, as suggestions in the UI
    _guide: ClassVar[VendorGuide | None] = None

    @classmethod
    def guide(cls) -> VendorGuide:
        """The vendor's UI copy: ``ui.yaml`` beside the module that defines the class."""
        cached = cls.__dict__.get("_guide")
        if cached is None:
            import inspect
            import os

            cached = load_guide(os.path.dirname(inspect.getfile(cls)))
            cls._guide = cached
        return cached

    @classmethod
    def secret_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in cls.settings_schema if f.secret)

    @classmethod
    def secrets_of(cls, settings: Settings) -> list[str]:
        """The secret settings' values, and the access token when one is given (masked alike)."""
        names = (*cls.secret_fields(), ACCESS_TOKEN_KEY)
        return [str(settings[name]) for name in names if settings.get(name)]

    def endpoint(self, settings: Settings, override: str | None) -> str:
        return override or self.default_endpoint

    def format_item(self, item: Item, settings: Settings) -> Formatted | Skip:
        raise NotImplementedError

    def format_for(
        self,
        item: Item,
        settings: Settings,
        sources: Mapping[str, str | None] | None = None,
        now: float | None = None,
    ) -> Formatted | Skip:
        """:meth:`format_item`, then the integration's field-source overrides: what the delivery
        worker, the mapping preview and the golden cases all send. ``now`` (golden cases only) is
        passed to a ``format_item`` that takes the time."""
        if now is None:
            shaped = self.format_item(item, settings)
        else:
            shaped = self.format_item(item, settings, now=now)  # type: ignore[call-arg]
        if isinstance(shaped, Skip) or not sources:
            return shaped
        return self.apply_field_sources(shaped, item.event, sources)

    def apply_field_sources(
        self, formatted: Formatted, event: Event, sources: Mapping[str, str | None]
    ) -> Formatted | Skip:
        """``formatted`` with each vendor field set from its source (pure: a changed copy).

        ``sources`` maps a vendor field name to a dotted path into ``event``, a constant ``=value``
        or None (remove the field). A path that is absent in the event removes the field. A dotted
        field name sets a key inside a JSON object field (Exactag ``params.currency``; for the
        webhook, a path into the forwarded event). Fields live in ``payload[fields_at]``, or the
        payload itself. Afterwards :meth:`check_fields` may refuse the result (a required
        identifier was removed): the event is then skipped with that reason, never sent.
        """
        if not sources:
            return formatted
        payload = copy.deepcopy(formatted.payload)
        container = payload if self.fields_at is None else payload.get(self.fields_at)
        if not isinstance(container, dict):
            return formatted
        touched: list[str] = []
        for name, raw in sources.items():
            source = parse_source(raw)
            if source.kind == "constant":
                value: Any = source.value
            elif source.kind == "path":
                value = copy.deepcopy(resolve_path(event, source.value))
            else:
                value = None
            _place(container, name.split("."), value)
            top = name.split(".", 1)[0]
            if top not in touched:
                touched.append(top)
        for top in touched:
            if top in container:
                shaped = self.field_value(container[top])
                if shaped is None:
                    container.pop(top)
                else:
                    container[top] = shaped
        problem = self.check_fields(container)
        return problem if problem is not None else Formatted(formatted.item_id, payload)

    def field_value(self, value: Any) -> Any:
        """The form in which an overridden top-level field is sent; None: not sent.

        Default: JSON types kept, empty values dropped. Exactag sends text (query values).
        """
        return None if is_empty(value) else value

    def check_fields(self, fields: Mapping[str, Any]) -> Skip | None:
        """Why the fields left after the overrides cannot be sent (a required one is gone), or None."""
        return None

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        """Group formatted items into requests of at most :attr:`max_batch` items."""
        raise NotImplementedError

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        """One outcome for every item id of ``request``."""
        outcome = classify_status(response)
        return {item_id: outcome for item_id in request.item_ids}

    def token_request(self, settings: Settings, endpoint: str) -> OutboundRequest | None:
        """The request that gets an access token (``item_ids`` empty), or None: no token needed."""
        return None

    def read_token(self, response: VendorResponse) -> AccessToken | ItemOutcome:
        """The token in the token endpoint's answer, or the outcome of the items waiting for it."""
        return ItemOutcome(Outcome.AUTH_FAILED, "this vendor issues no access tokens")


def _place(container: dict[str, Any], names: list[str], value: Any) -> None:
    """Set ``container[names[0]][names[1]]...`` to ``value``; an empty value removes the key and
    any object that becomes empty by it (empty values are never sent)."""
    head, rest = names[0], names[1:]
    if not rest:
        if is_empty(value):
            container.pop(head, None)
        else:
            container[head] = value
        return
    inner = container.get(head)
    if not isinstance(inner, dict):
        if is_empty(value):
            return
        inner = container[head] = {}
    _place(inner, rest, value)
    if not inner:
        container.pop(head, None)


def chunks(seq: Sequence[Formatted], size: int) -> list[Sequence[Formatted]]:
    return [seq[i : i + size] for i in range(0, len(seq), max(1, size))]




@dataclass(frozen=True)
class VendorGuide:
    """What the UI says about a vendor, read from ``ui.yaml`` in its folder (copy is data)."""

    summary: str = ""
    consent_hint: str = ""
    suggested_consent: tuple[str, ...] = ()
    mapping_label: str = "Mapping"
    setup: tuple[str, ...] = ()  # steps to get the credentials and settings
    troubleshooting: Mapping[str, str] = field(default_factory=dict)  # symptom or status -> what to do


def load_guide(folder: str) -> VendorGuide:
    """Read ``ui.yaml`` of a destination folder (absent: an empty guide)."""
    import os

    import yaml

    path = os.path.join(folder, "ui.yaml")
    if not os.path.exists(path):
        return VendorGuide()
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    return VendorGuide(
        summary=str(raw.get("summary", "")),
        consent_hint=str(raw.get("consent_hint", "")),
        suggested_consent=tuple(str(c) for c in raw.get("suggested_consent", ())),
        mapping_label=str(raw.get("mapping_label", "Mapping")),
        setup=tuple(str(step) for step in raw.get("setup", ())),
        troubleshooting={str(k): str(v) for k, v in (raw.get("troubleshooting") or {}).items()},
    )


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
