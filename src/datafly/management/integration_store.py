"""UI-managed integrations: stored as documents, secrets encrypted, mirrored into the runtime.

A document (kind ``integration``) holds the config-file shape of an integration, except that
each secret setting lives under ``secrets`` as a Fernet token. On start and after every change
the decrypted :class:`~datafly.config.Integration` (``managed_by="ui"``) is put into
``runtime.integrations``, which restarts that integration's worker.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from datafly.config import Integration, _Checker
from datafly.destinations.base import mask_secret, mask_text
from datafly.destinations.registry import get_destination
from datafly.management.endpoints import endpoint_problem
from datafly.management.secrets import SecretBox, SecretUnreadable
from datafly.management.web import ApiError
from datafly.runtime.roles import Runtime

__all__ = ["IntegrationStore", "is_masked"]

log = logging.getLogger("datafly.management")
KIND = "integration"
_EDITABLE = {"preset", "settings", "sources", "consent", "endpoint", "events", "mapping", "enabled", "fields"}
_CATEGORY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")  # \Z: "$" would let a final line break through


def is_masked(value: Any) -> bool:
    """A value the UI echoes back for a secret it only knows masked: keep the stored one."""
    return isinstance(value, str) and (value == "" or value.endswith("****"))


def overrides_for(preset_events: Mapping[str, str], mapping: Mapping[str, Any]) -> dict[str, str | None]:
    """The ``events`` overrides that turn a preset's mapping into ``mapping``."""
    found: dict[str, str | None] = {}
    for name in preset_events:
        if name not in mapping or mapping[name] in (None, ""):
            found[name] = None
    for name, value in mapping.items():
        if value not in (None, "") and preset_events.get(name) != str(value):
            found[str(name)] = str(value)
    return found


class IntegrationStore:
    def __init__(self, runtime: Runtime, box: SecretBox) -> None:
        self.runtime = runtime
        self.box = box
        self.config_ids = {i.id for i in runtime.config.integrations}
        self.problems: dict[str, str] = {}  # integration id -> what needs the user's attention

    # loading -------------------------------------------------------------------------------
    async def load(self) -> None:
        """Put every stored integration into the runtime (the startup hook)."""
        for doc in await self.runtime.backend.list_documents(KIND):
            iid = str(doc["id"])
            if iid in self.config_ids:
                log.warning("integration %s is defined in the config file; its UI copy is ignored", iid)
                continue
            self.runtime.integrations.put(self.build(doc))

    def build(self, doc: Mapping[str, Any]) -> Integration:
        iid = str(doc["id"])
        settings = dict(doc.get("settings") or {})
        enabled = bool(doc.get("enabled", True))
        self.problems.pop(iid, None)
        for name, token in (doc.get("secrets") or {}).items():
            try:
                settings[name] = self.box.decrypt(str(token))
            except SecretUnreadable:
                self.problems[iid] = (
                    f"The stored {name} cannot be decrypted (the secret key changed). "
                    "Enter the credentials again and save."
                )
                enabled = False
        return Integration(
            id=iid,
            vendor=str(doc["vendor"]),
            preset=str(doc["preset"]),
            settings=settings,
            sources=tuple(doc["sources"]) if doc.get("sources") is not None else None,
            consent=tuple(doc.get("consent") or ()),
            endpoint=doc.get("endpoint") or None,
            events=dict(doc.get("events") or {}),
            enabled=enabled,
            managed_by="ui",
            fields=dict(doc.get("fields") or {}),
        )

    # views -----------------------------------------------------------------------------------
    def view(self, integration: Integration) -> dict[str, Any]:
        """The integration as the API and UI show it: secrets masked, never in full."""
        destination = get_destination(integration.vendor)
        schema = {f.name: f for f in destination.settings_schema} if destination else {}
        settings: dict[str, Any] = {}
        secrets_set: list[str] = []
        for name, value in integration.settings.items():
            field = schema.get(name)
            if field is not None and field.secret:
                if value not in (None, ""):
                    secrets_set.append(name)
                    settings[name] = mask_secret(str(value))
            else:
                settings[name] = value
        preset = destination.presets.get(integration.preset) if destination else None
        from_config = integration.managed_by != "ui"
        config_path = self.runtime.config.path or "the config file"
        endpoint = destination.endpoint(integration.settings, integration.endpoint) if destination else ""
        return {
            "id": integration.id,
            "vendor": integration.vendor,
            "vendor_title": destination.title if destination else integration.vendor,
            "preset": integration.preset,
            "preset_description": preset.description if preset else "",
            "settings": settings,
            "secrets_set": secrets_set,
            "consent": list(integration.consent),
            "sources": list(integration.sources) if integration.sources is not None else None,
            "endpoint": integration.endpoint,
            "effective_endpoint": endpoint if from_config or destination is None else self._endpoint_view(
                destination.secrets_of(integration.settings), endpoint
            ),
            "events": dict(integration.events),
            "mapping": integration.mapping(),
            "preset_events": dict(preset.events) if preset else {},
            "fields": dict(integration.fields),
            "enabled": integration.enabled,
            "managed_by": integration.managed_by,
            "read_only": from_config,
            "read_only_reason": (
                f"Defined in {config_path}: change it there and restart datafly." if from_config else None
            ),
            "problem": self.problems.get(integration.id),
        }

    @staticmethod
    def _endpoint_view(secrets: list[str], endpoint: str) -> str:
        return mask_text(endpoint, secrets)

    def all_views(self) -> list[dict[str, Any]]:
        return [self.view(i) for i in sorted(self.runtime.integrations.all(), key=lambda i: i.id)]

    def get(self, iid: str) -> Integration:
        found = self.runtime.integrations.get(iid)
        if found is None:
            raise ApiError(404, f"no integration {iid!r}")
        return found

    def editable(self, iid: str) -> Integration:
        found = self.get(iid)
        if found.managed_by != "ui":
            raise ApiError(
                409,
                f"{iid} is defined in {self.runtime.config.path or 'the config file'} and is read-only here: "
                "change it in that file and restart datafly",
            )
        return found

    # changes -------------------------------------------------------------------------------
    def _source_ids(self) -> set[str]:
        return {s.id for s in self.runtime.sources.by_key.values()}

    def check(self, body: Mapping[str, Any]) -> Integration:
        """Validate a config-shaped integration with the config file's own rules."""
        problems: list[str] = []
        consent = body.get("consent")
        if isinstance(consent, list):
            for j, category in enumerate(consent):
                if not isinstance(category, str) or not _CATEGORY.match(category):
                    problems.append(f"consent[{j}]: use letters, digits, '-', '_' or '.'")
        integration = _Checker(problems).integration(body, "@", self._source_ids())
        problems = [p.removeprefix("@.").removeprefix("@") for p in problems]
        if problems or integration is None:
            raise ApiError(400, "the integration is not valid", problems or ["invalid integration"])
        return dataclasses.replace(integration, managed_by="ui")

    @staticmethod
    def endpoints_of(integration: Integration) -> dict[str, str]:
        """Every URL the integration names itself, by where it is set: the ``endpoint`` override
        and the URL settings (the webhook's ``url``). Vendors' own default endpoints are not."""
        found: dict[str, str] = {}
        if integration.endpoint:
            found["endpoint"] = integration.endpoint
        destination = get_destination(integration.vendor)
        for f in destination.settings_schema if destination else ():
            value = integration.settings.get(f.name)
            if f.format == "url" and isinstance(value, str) and value:
                found[f"settings.{f.name}"] = value
        return found

    async def check_endpoints(self, integration: Integration, previous: Integration | None) -> None:
        """Refuse (400) new endpoints on internal addresses unless the config allows them
        (``management.allow_private_endpoints``; see datafly.management.endpoints)."""
        if self.runtime.config.management.allow_private_endpoints:
            return
        before = self.endpoints_of(previous) if previous is not None else {}
        problems = []
        for where, url in self.endpoints_of(integration).items():
            if before.get(where) == url:
                continue  # unchanged: it was allowed when it was saved
            problem = await endpoint_problem(url)
            if problem:
                problems.append(f"{where}: {problem}")
        if problems:
            raise ApiError(400, "the integration is not valid", problems)

    @staticmethod
    def check_fields(raw: Any, vendor: str) -> dict[str, str | None]:
        """Validate a ``fields`` body (vendor field -> source) with the config file's rules."""
        problems: list[str] = []
        found = _Checker(problems).fields(raw, "fields", get_destination(vendor))
        if problems:
            raise ApiError(400, "the field sources are not valid", problems)
        return found

    def new_id(self, vendor: str) -> str:
        taken = {i.id for i in self.runtime.integrations.all()}
        candidate, n = vendor, 1
        while candidate in taken:
            n += 1
            candidate = f"{vendor}-{n}"
        return candidate

    async def create(self, body: Mapping[str, Any]) -> Integration:
        unknown = set(body) - _EDITABLE - {"id", "vendor"}
        if unknown:
            raise ApiError(400, "unknown fields", [f"{k}: unknown field" for k in sorted(unknown)])
        raw = self._config_shape(body)
        vendor = raw.get("vendor")
        if not isinstance(vendor, str) or get_destination(vendor) is None:
            raise ApiError(400, "the integration is not valid", ["vendor: choose one from the library"])
        raw.setdefault("id", self.new_id(vendor))
        if self.runtime.integrations.get(str(raw["id"])) is not None:
            raise ApiError(409, f"an integration with id {raw['id']!r} exists already")
        integration = self.check(raw)
        await self.check_endpoints(integration, None)
        await self._save(integration, created_at=time.time())
        return integration

    async def update(self, iid: str, body: Mapping[str, Any]) -> Integration:
        current = self.editable(iid)
        unknown = set(body) - _EDITABLE
        if unknown:
            raise ApiError(400, "these fields cannot be changed", [f"{k}: cannot be changed" for k in unknown])
        destination = get_destination(current.vendor)
        assert destination is not None
        secret_names = set(destination.secret_fields())
        raw: dict[str, Any] = {
            "id": current.id,
            "vendor": current.vendor,
            "preset": current.preset,
            "settings": dict(current.settings),
            "consent": list(current.consent),
            "events": dict(current.events),
            "enabled": current.enabled,
            "fields": dict(current.fields),
        }
        if current.sources is not None:
            raw["sources"] = list(current.sources)
        if current.endpoint:
            raw["endpoint"] = current.endpoint
        changes = self._config_shape(body, preset=str(body.get("preset", current.preset)), vendor=current.vendor)
        settings_change = changes.pop("settings", None) or {}
        if not isinstance(settings_change, dict):
            raise ApiError(400, "the integration is not valid", ["settings: expected a mapping"])
        for name, value in settings_change.items():
            if name in secret_names and is_masked(value):
                continue  # left as it was
            if value is None or value == "":
                raw["settings"].pop(name, None)
            else:
                raw["settings"][name] = value
        raw.update(changes)
        integration = self.check(raw)
        await self.check_endpoints(integration, current)
        doc = await self.runtime.backend.get_document(KIND, iid)
        await self._save(integration, created_at=float((doc or {}).get("created_at") or time.time()))
        return integration

    def _config_shape(
        self, body: Mapping[str, Any], preset: str | None = None, vendor: str | None = None
    ) -> dict[str, Any]:
        """The body in the config file's shape (``mapping`` becomes ``events`` overrides)."""
        raw = {k: v for k, v in body.items() if k != "mapping"}
        for key in ("endpoint", "sources"):
            if key in raw and not raw[key]:
                raw[key] = None  # empty: the vendor's endpoint, every source
        if isinstance(raw.get("settings"), dict) and vendor is None:
            raw["settings"] = {k: v for k, v in raw["settings"].items() if v not in (None, "")}
        mapping = body.get("mapping")
        if mapping is not None:
            if not isinstance(mapping, dict):
                raise ApiError(400, "the integration is not valid", ["mapping: expected event: value pairs"])
            destination = get_destination(str(vendor or body.get("vendor", "")))
            chosen = preset or str(body.get("preset") or "")
            base = destination.presets.get(chosen) if destination else None
            raw["events"] = overrides_for(base.events if base else {}, mapping)
        return raw

    async def _save(self, integration: Integration, created_at: float) -> None:
        destination = get_destination(integration.vendor)
        assert destination is not None
        secret_names = set(destination.secret_fields())
        doc = {
            "vendor": integration.vendor,
            "preset": integration.preset,
            "settings": {k: v for k, v in integration.settings.items() if k not in secret_names},
            "secrets": {
                k: self.box.encrypt(str(v))
                for k, v in integration.settings.items()
                if k in secret_names and v not in (None, "")
            },
            "sources": list(integration.sources) if integration.sources is not None else None,
            "consent": list(integration.consent),
            "endpoint": integration.endpoint,
            "events": dict(integration.events),
            "fields": dict(integration.fields),
            "enabled": integration.enabled,
            "created_at": created_at,
            "updated_at": time.time(),
        }
        await self.runtime.backend.put_document(KIND, integration.id, doc)
        self.problems.pop(integration.id, None)
        self.runtime.integrations.put(integration)

    async def delete(self, iid: str) -> None:
        self.editable(iid)
        await self.runtime.backend.delete_document(KIND, iid)
        self.problems.pop(iid, None)
        self.runtime.integrations.remove(iid)
