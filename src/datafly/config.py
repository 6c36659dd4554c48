"""The YAML config file: parsing, ``${ENV}`` substitution and validation.

Every problem is reported at once, one line each, naming the key path
(``integrations[0].settings.campaign_code: required``). Unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from datafly.destinations.base import Destination
from datafly.destinations.fields import check_field_name, check_source
from datafly.destinations.registry import get_destination
from datafly.destinations.rules import url_problem
from datafly.durations import parse_duration
from datafly.errors import ConfigError

__all__ = [
    "Config",
    "DeliveryConfig",
    "GatewayConfig",
    "Integration",
    "ManagementConfig",
    "ProcessingConfig",
    "Source",
    "load_config",
    "parse_config",
]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BOOLEAN_TEXT = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # \Z: "$" would let a final line break through


@dataclass(frozen=True)
class Source:
    id: str
    key: str
    origins: tuple[str, ...] = ()
    rate_limit: float | None = None  # events per second, with a burst of one second's worth (min 100)


@dataclass(frozen=True)
class Integration:
    id: str
    vendor: str
    preset: str
    settings: Mapping[str, Any]
    sources: tuple[str, ...] | None = None
    consent: tuple[str, ...] = ()
    endpoint: str | None = None
    events: Mapping[str, str | None] = field(default_factory=dict)
    enabled: bool = True
    managed_by: str = "config"  # config | ui
    # vendor field -> dotted path into the processed event, "=constant", or None (remove the field)
    fields: Mapping[str, str | None] = field(default_factory=dict)

    def mapping(self) -> dict[str, str]:
        """The effective event mapping: the preset's, with the ``events`` overrides applied."""
        destination = get_destination(self.vendor)
        base = dict(destination.presets[self.preset].events) if destination else {}
        for name, value in self.events.items():
            if value is None:
                base.pop(name, None)
            else:
                base[name] = value
        return base


@dataclass(frozen=True)
class DeliveryConfig:
    max_attempts: int = 8
    initial_backoff: float = 1.0
    max_backoff: float = 600.0
    max_age: float = 86400.0
    timeout: float = 10.0
    concurrency: int = 64  # requests in flight per integration


@dataclass(frozen=True)
class GatewayConfig:
    max_body_bytes: int = 512 * 1024
    max_batch_events: int = 500
    trusted_proxies: tuple[str, ...] = ()  # addresses or CIDR ranges whose X-Forwarded-For is honoured
    cookie_name: str = "_dfid"
    cookie_max_age: int = 400 * 86400
    max_header_bytes: int = 64 * 1024  # request line and headers of one request; over it: 431
    max_headers: int = 100  # header fields of one request; over it: 431
    header_timeout: float = 10.0  # a request's line and headers must all arrive within it; else 408
    body_timeout: float = 30.0  # a request's body must all arrive within it after its headers; else 408

    def is_trusted_proxy(self, address: str) -> bool:
        if not self.trusted_proxies or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.trusted_proxies)


@dataclass(frozen=True)
class ProcessingConfig:
    phone_region: str | None = None  # default region for phone numbers without a country code, e.g. GB
    session_timeout: float = 1800.0
    dedup_window: float = 86400.0
    max_traits_bytes: int = 16 * 1024  # identify traits kept per visitor (JSON); the largest go first


@dataclass(frozen=True)
class ManagementConfig:
    # endpoints entered in the management UI or API may resolve to private, loopback, link-local
    # or other internal addresses (the config file's own integrations are never checked)
    allow_private_endpoints: bool = False


@dataclass(frozen=True)
class Config:
    sources: tuple[Source, ...] = ()
    integrations: tuple[Integration, ...] = ()
    storage: str | None = None
    queue: str | None = None
    delivery: DeliveryConfig = DeliveryConfig()
    gateway: GatewayConfig = GatewayConfig()
    processing: ProcessingConfig = ProcessingConfig()
    management: ManagementConfig = ManagementConfig()
    path: str = ""


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse_config(text, env if env is not None else os.environ, path=path)


def parse_config(text: str, env: Mapping[str, str], path: str = "") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError([f"{where}invalid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if raw is None:
        raw = {}
    problems: list[str] = []
    raw = _substitute(raw, env, "", problems)
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping of keys such as sources and integrations"])
    checker = _Checker(problems)
    config = checker.config(raw, path)
    if problems:
        raise ConfigError(problems)
    return config


def _substitute(value: Any, env: Mapping[str, str], where: str, problems: list[str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                problems.append(f"{where or '(top level)'}: environment variable {name} is not set")
                return match.group(0)  # keep the placeholder so no second problem is reported for it
            return env[name]

        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, _join(where, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Checker:
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def keys(
        self, raw: Mapping[str, Any], where: str, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
    ) -> None:
        for key in raw:
            if key not in allowed:
                self.fail(_join(where, str(key)), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - set(raw)):
            self.fail(_join(where, key), "required")

    def string(self, raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str | None:
        value = raw.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.fail(_join(where, key), f"expected a non-empty string, got {value!r}")
            return None
        return value

    def strings(self, raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(_join(where, key), "expected a list of strings")
            return None
        return tuple(value)

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        where: str,
        default: float,
        parse: Callable[[Any], float] = float,
    ) -> float:
        if key not in raw:
            return default
        try:
            value = parse(raw[key])
        except (TypeError, ValueError) as exc:
            self.fail(
                _join(where, key),
                str(exc) if parse is parse_duration else f"expected a number, got {raw[key]!r}",
            )
            return default
        if value < 0:
            self.fail(_join(where, key), "must not be negative")
        return value

    def integer(self, raw: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 1) -> int:
        if key not in raw:
            return default
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(_join(where, key), f"expected an integer >= {minimum}, got {value!r}")
            return default
        return value

    def config(self, raw: Mapping[str, Any], path: str) -> Config:
        self.keys(
            raw,
            "",
            {"sources", "integrations", "storage", "queue", "delivery", "gateway", "processing", "management"},
        )
        sources = self.sources(raw.get("sources", []))
        integrations = self.integrations(raw.get("integrations", []), {s.id for s in sources})
        storage = self.string(raw, "storage", "")
        queue = self.string(raw, "queue", "")
        if storage and not storage.startswith(("postgresql://", "postgres://")):
            self.fail("storage", "expected postgresql://... (or leave it out for the embedded default)")
        if bool(storage) != bool(queue):
            self.fail("storage" if queue else "queue", "scale-out needs both storage (PostgreSQL) and queue (Redis)")
        if queue and not queue.startswith(("redis://", "rediss://")):
            self.fail("queue", "expected redis://... (or leave it out for the embedded default)")
        return Config(
            sources=sources,
            integrations=integrations,
            storage=storage,
            queue=queue,
            delivery=self.delivery(raw.get("delivery", {})),
            gateway=self.gateway(raw.get("gateway", {})),
            processing=self.processing(raw.get("processing", {})),
            management=self.management(raw.get("management", {})),
            path=path,
        )

    def section(self, raw: Any, where: str) -> Mapping[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(where, "expected a mapping")
            return {}
        return raw

    def sources(self, raw: Any) -> tuple[Source, ...]:
        if not isinstance(raw, list):
            self.fail("sources", "expected a list")
            return ()
        found: list[Source] = []
        seen_ids: set[str] = set()
        seen_keys: set[str] = set()
        for i, item in enumerate(raw):
            where = f"sources[{i}]"
            if not isinstance(item, dict):
                self.fail(where, "expected a mapping with id and key")
                continue
            self.keys(item, where, {"id", "key", "origins", "rate_limit"}, {"id", "key"})
            sid = self.string(item, "id", where)
            key = self.string(item, "key", where)
            origins = self.strings(item, "origins", where) or ()
            for j, origin in enumerate(origins):
                if not re.match(r"^https?://[^/\s]+$", origin) and origin != "*":
                    self.fail(
                        f"{where}.origins[{j}]",
                        f"expected an origin such as https://shop.example.com, got {origin!r}",
                    )
            rate = self.number(item, "rate_limit", where, 0.0) or None
            if sid and not _ID.match(sid):
                self.fail(f"{where}.id", "use letters, digits, '-', '_' or '.'")
            if sid in seen_ids:
                self.fail(f"{where}.id", f"duplicate source id {sid!r}")
            if key in seen_keys:
                self.fail(f"{where}.key", "duplicate pipeline key")
            if sid and key:
                seen_ids.add(sid)
                seen_keys.add(key)
                found.append(Source(id=sid, key=key, origins=origins, rate_limit=rate))
        return tuple(found)

    def integrations(self, raw: Any, source_ids: set[str]) -> tuple[Integration, ...]:
        if not isinstance(raw, list):
            self.fail("integrations", "expected a list")
            return ()
        found: list[Integration] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            where = f"integrations[{i}]"
            if not isinstance(item, dict):
                self.fail(where, "expected a mapping with id, vendor and settings")
                continue
            integration = self.integration(item, where, source_ids)
            if integration is None:
                continue
            if integration.id in seen:
                self.fail(f"{where}.id", f"duplicate integration id {integration.id!r}")
            seen.add(integration.id)
            found.append(integration)
        return tuple(found)

    def integration(self, item: Mapping[str, Any], where: str, source_ids: set[str]) -> Integration | None:
        allowed = {
            "id",
            "vendor",
            "preset",
            "sources",
            "consent",
            "settings",
            "endpoint",
            "events",
            "enabled",
            "fields",
        }
        self.keys(item, where, allowed, {"id", "vendor"})
        iid = self.string(item, "id", where)
        vendor = self.string(item, "vendor", where)
        if iid and not _ID.match(iid):
            self.fail(f"{where}.id", "use letters, digits, '-', '_' or '.'")
        destination = get_destination(vendor) if vendor else None
        if vendor and destination is None:
            from datafly.destinations.registry import all_destinations

            self.fail(
                f"{where}.vendor", f"unknown vendor {vendor!r} (known: {', '.join(all_destinations())})"
            )
        preset = self.string(item, "preset", where)
        if destination is not None:
            if preset is None:
                preset = next(iter(destination.presets))
            elif preset not in destination.presets:
                self.fail(
                    f"{where}.preset",
                    f"unknown preset {preset!r} for {vendor} (known: {', '.join(destination.presets)})",
                )
        sources = self.strings(item, "sources", where)
        for j, sid in enumerate(sources or ()):
            if sid not in source_ids:
                self.fail(f"{where}.sources[{j}]", f"no source with id {sid!r}")
        consent = self.strings(item, "consent", where) or ()
        settings = dict(self.section(item.get("settings", {}), f"{where}.settings"))
        if destination is not None:
            self.settings(settings, destination.settings_schema, f"{where}.settings")
        endpoint = self.string(item, "endpoint", where)
        endpoint_problem = url_problem(endpoint) if endpoint and not _ENV.search(endpoint) else None
        if endpoint_problem:
            self.fail(f"{where}.endpoint", endpoint_problem)
        events_raw = self.section(item.get("events", {}), f"{where}.events")
        events: dict[str, str | None] = {}
        for name, value in events_raw.items():
            if value is not None and not isinstance(value, str | int):
                self.fail(
                    f"{where}.events.{name}", "expected a mapping value (string), or null to drop the event"
                )
                continue
            events[str(name)] = None if value is None else str(value)
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail(f"{where}.enabled", "expected true or false")
        fields = self.fields(item.get("fields"), f"{where}.fields", destination)
        if not (iid and vendor and destination and preset):
            return None
        return Integration(
            id=iid,
            vendor=vendor,
            preset=preset,
            settings=dict(settings),
            sources=sources,
            consent=consent,
            endpoint=endpoint,
            events=events,
            enabled=bool(enabled),
            fields=fields,
        )

    def fields(self, raw: Any, where: str, destination: Destination | None) -> dict[str, str | None]:
        """``fields:``: vendor field -> dotted event path, ``=constant`` or null (remove the field)."""
        found: dict[str, str | None] = {}
        for name, source in self.section(raw, where).items():
            name = str(name)
            problem = check_field_name(name)
            reserved = destination.reserved_fields.get(name.split(".", 1)[0]) if destination else None
            if problem is None and reserved:
                problem = f"cannot be overridden: it {reserved}"
            if problem is None:
                problem = check_source(source)
            if problem is not None:
                self.fail(f"{where}.{name}", problem)
                continue
            found[name] = source
        return found

    def settings(self, raw: dict[str, Any], schema: tuple[Any, ...], where: str) -> None:
        """Check settings against a vendor schema; booleans and integers written as text (as
        ``${ENV}`` substitution leaves them) are converted in place."""
        known = {f.name: f for f in schema}
        for f in schema:
            value = raw.get(f.name)
            if isinstance(value, str) and f.kind == "boolean" and value.strip().lower() in _BOOLEAN_TEXT:
                raw[f.name] = _BOOLEAN_TEXT[value.strip().lower()]
            elif isinstance(value, str) and f.kind == "integer" and re.fullmatch(r"\s*\d+\s*", value):
                raw[f.name] = int(value)
        for key in raw:
            if key not in known:
                self.fail(f"{where}.{key}", f"unknown setting (allowed: {', '.join(known)})")
        for f in schema:
            value = raw.get(f.name)
            if value is None or value == "":
                if f.required:
                    self.fail(f"{where}.{f.name}", "required")
                continue
            kind_ok = {
                "string": isinstance(value, str | int) and not isinstance(value, bool),
                "integer": isinstance(value, int) and not isinstance(value, bool),
                "boolean": isinstance(value, bool),
                "mapping": isinstance(value, dict),
            }.get(f.kind, True)
            if not kind_ok:
                self.fail(f"{where}.{f.name}", f"expected a {f.kind}, got {value!r}")
                continue
            if isinstance(value, str) and _ENV.search(value):
                continue  # an unset ${NAME}: reported once, by the substitution
            for problem in f.problems(value):  # formats, lengths, URLs, headers (datafly.destinations.rules)
                self.fail(f"{where}.{f.name}", problem)

    def delivery(self, raw: Any) -> DeliveryConfig:
        raw = self.section(raw, "delivery")
        self.keys(
            raw,
            "delivery",
            {"max_attempts", "initial_backoff", "max_backoff", "max_age", "timeout", "concurrency"},
        )
        d = DeliveryConfig()
        return DeliveryConfig(
            max_attempts=self.integer(raw, "max_attempts", "delivery", d.max_attempts),
            initial_backoff=self.number(
                raw, "initial_backoff", "delivery", d.initial_backoff, parse_duration
            ),
            max_backoff=self.number(raw, "max_backoff", "delivery", d.max_backoff, parse_duration),
            max_age=self.number(raw, "max_age", "delivery", d.max_age, parse_duration),
            timeout=self.number(raw, "timeout", "delivery", d.timeout, parse_duration),
            concurrency=self.integer(raw, "concurrency", "delivery", d.concurrency),
        )

    def gateway(self, raw: Any) -> GatewayConfig:
        raw = self.section(raw, "gateway")
        self.keys(
            raw,
            "gateway",
            {
                "max_body_bytes",
                "max_batch_events",
                "trusted_proxies",
                "cookie_name",
                "cookie_max_age",
                "max_header_bytes",
                "max_headers",
                "header_timeout",
                "body_timeout",
            },
        )
        g = GatewayConfig()
        timeouts = {
            key: self.number(raw, key, "gateway", getattr(g, key), parse_duration)
            for key in ("header_timeout", "body_timeout")
        }
        for key, value in timeouts.items():
            if key in raw and value == 0:
                self.fail(f"gateway.{key}", "must be longer than 0s")
        proxies = self.strings(raw, "trusted_proxies", "gateway") or ()
        for j, net in enumerate(proxies):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                self.fail(f"gateway.trusted_proxies[{j}]", f"expected an address or CIDR range, got {net!r}")
        return GatewayConfig(
            max_body_bytes=self.integer(raw, "max_body_bytes", "gateway", g.max_body_bytes),
            max_batch_events=self.integer(raw, "max_batch_events", "gateway", g.max_batch_events),
            trusted_proxies=proxies,
            cookie_name=self.string(raw, "cookie_name", "gateway", g.cookie_name) or g.cookie_name,
            cookie_max_age=int(
                self.number(raw, "cookie_max_age", "gateway", g.cookie_max_age, parse_duration)
            ),
            max_header_bytes=self.integer(raw, "max_header_bytes", "gateway", g.max_header_bytes, minimum=1024),
            max_headers=self.integer(raw, "max_headers", "gateway", g.max_headers),
            header_timeout=timeouts["header_timeout"] or g.header_timeout,
            body_timeout=timeouts["body_timeout"] or g.body_timeout,
        )

    def management(self, raw: Any) -> ManagementConfig:
        raw = self.section(raw, "management")
        self.keys(raw, "management", {"allow_private_endpoints"})
        allow = raw.get("allow_private_endpoints", False)
        if isinstance(allow, str) and allow.strip().lower() in _BOOLEAN_TEXT:  # from ${ENV}
            allow = _BOOLEAN_TEXT[allow.strip().lower()]
        if not isinstance(allow, bool):
            self.fail("management.allow_private_endpoints", f"expected true or false, got {allow!r}")
            allow = False
        return ManagementConfig(allow_private_endpoints=allow)

    def processing(self, raw: Any) -> ProcessingConfig:
        raw = self.section(raw, "processing")
        self.keys(raw, "processing", {"phone_region", "session_timeout", "dedup_window", "max_traits_bytes"})
        p = ProcessingConfig()
        region = self.string(raw, "phone_region", "processing")
        if region is not None and not re.match(r"^[A-Z]{2}$", region):
            self.fail(
                "processing.phone_region", f"expected a two-letter region code such as GB, got {region!r}"
            )
        return ProcessingConfig(
            phone_region=region,
            session_timeout=self.number(
                raw, "session_timeout", "processing", p.session_timeout, parse_duration
            ),
            dedup_window=self.number(raw, "dedup_window", "processing", p.dedup_window, parse_duration),
            max_traits_bytes=self.integer(raw, "max_traits_bytes", "processing", p.max_traits_bytes, minimum=256),
        )
