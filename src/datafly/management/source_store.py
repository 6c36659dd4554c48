"""UI-managed sources (pipeline keys), merged with the config file's into the gateway's index."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from datafly.config import Source
from datafly.management.web import ApiError
from datafly.runtime.roles import Runtime

__all__ = ["SourceStore", "snippet"]

KIND = "source"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # \Z: "$" would let a final line break through
_ORIGIN = re.compile(r"^https?://[^/\s]+\Z")


def new_key() -> str:
    return "dk_live_" + secrets.token_urlsafe(24)


def snippet(base_url: str, key: str) -> str:
    """The tag to paste into every page (the contract's "Datafly.js on a page")."""
    return f'<script async src="{base_url.rstrip("/")}/d.js" data-pipeline-key="{key}"></script>'


class SourceStore:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.configured = {s.id: s for s in runtime.config.sources}
        self.managed: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        self.managed = {
            str(d["id"]): d
            for d in await self.runtime.backend.list_documents(KIND)
            if str(d["id"]) not in self.configured
        }
        self._apply()

    def _apply(self) -> None:
        ui = [
            Source(
                id=sid,
                key=str(d["key"]),
                origins=tuple(d.get("origins") or ()),
                rate_limit=d.get("rate_limit") or None,
            )
            for sid, d in self.managed.items()
        ]
        self.runtime.sources.replace([*self.configured.values(), *ui])

    def views(self, base_url: str) -> list[dict[str, Any]]:
        found = [self._config_view(s, base_url) for s in self.configured.values()]
        found += [self._view(d, base_url) for d in self.managed.values()]
        return sorted(found, key=lambda v: str(v["id"]))

    def view(self, sid: str, base_url: str) -> dict[str, Any]:
        if sid in self.configured:
            return self._config_view(self.configured[sid], base_url)
        if sid in self.managed:
            return self._view(self.managed[sid], base_url)
        raise ApiError(404, f"no source {sid!r}")

    def _config_view(self, source: Source, base_url: str) -> dict[str, Any]:
        return {
            "id": source.id,
            "key": source.key,
            "origins": list(source.origins),
            "rate_limit": source.rate_limit,
            "managed_by": "config",
            "read_only": True,
            "read_only_reason": f"Defined in {self.runtime.config.path or 'the config file'}: "
            "change it there and restart datafly.",
            "snippet": snippet(base_url, source.key),
            "created_at": None,
            "rotated_at": None,
        }

    @staticmethod
    def _view(doc: dict[str, Any], base_url: str) -> dict[str, Any]:
        return {
            "id": doc["id"],
            "key": doc["key"],
            "origins": list(doc.get("origins") or []),
            "rate_limit": doc.get("rate_limit"),
            "managed_by": "ui",
            "read_only": False,
            "read_only_reason": None,
            "snippet": snippet(base_url, str(doc["key"])),
            "created_at": doc.get("created_at"),
            "rotated_at": doc.get("rotated_at"),
        }

    def _check(self, body: dict[str, Any]) -> tuple[list[str], float | None]:
        problems: list[str] = []
        origins = body.get("origins") or []
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            problems.append("origins: expected a list of origins such as https://shop.example.com")
            origins = []
        for j, origin in enumerate(origins):
            if not _ORIGIN.match(origin) and origin != "*":
                problems.append(f"origins[{j}]: expected an origin such as https://shop.example.com")
        rate = body.get("rate_limit")
        if rate in ("", 0):
            rate = None
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0):
            problems.append("rate_limit: expected events per second (a positive number), or empty")
        if problems:
            raise ApiError(400, "the source is not valid", problems)
        return origins, float(rate) if rate is not None else None

    def _editable(self, sid: str) -> dict[str, Any]:
        if sid in self.configured:
            raise ApiError(409, f"{sid} is defined in the config file and is read-only here")
        if sid not in self.managed:
            raise ApiError(404, f"no source {sid!r}")
        return self.managed[sid]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        sid = body.get("id")
        if not isinstance(sid, str) or not _ID.match(sid):
            raise ApiError(400, "the source is not valid", ["id: use letters, digits, '-', '_' or '.'"])
        if sid in self.configured or sid in self.managed:
            raise ApiError(409, f"a source with id {sid!r} exists already")
        unknown = set(body) - {"id", "origins", "rate_limit"}
        if unknown:
            raise ApiError(400, "unknown fields", [f"{k}: unknown field" for k in sorted(unknown)])
        origins, rate = self._check(body)
        doc = {"id": sid, "key": new_key(), "origins": origins, "rate_limit": rate, "created_at": time.time()}
        await self._save(doc)
        return doc

    async def update(self, sid: str, body: dict[str, Any]) -> dict[str, Any]:
        doc = dict(self._editable(sid))
        unknown = set(body) - {"origins", "rate_limit"}
        if unknown:
            raise ApiError(400, "these fields cannot be changed", [f"{k}: cannot be changed" for k in unknown])
        merged = {"origins": doc.get("origins"), "rate_limit": doc.get("rate_limit"), **body}
        doc["origins"], doc["rate_limit"] = self._check(merged)
        await self._save(doc)
        return doc

    async def rotate(self, sid: str) -> dict[str, Any]:
        """A new pipeline key; the old one stops working at once."""
        doc = dict(self._editable(sid))
        doc["key"] = new_key()
        doc["rotated_at"] = time.time()
        await self._save(doc)
        return doc

    async def revoke(self, sid: str) -> None:
        self._editable(sid)
        await self.runtime.backend.delete_document(KIND, sid)
        del self.managed[sid]
        self._apply()

    async def _save(self, doc: dict[str, Any]) -> None:
        await self.runtime.backend.put_document(KIND, str(doc["id"]), doc)
        self.managed[str(doc["id"])] = doc
        self._apply()
