"""The visitor profile: what the platform remembers of one anonymous id between events.

A plain record, shared by the pipeline that fills it (``processing/``) and the backends that
store it (``store/``); it imports nothing of either.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

__all__ = ["Profile"]

log = logging.getLogger("datafly.processor")


@dataclass
class Profile:
    anonymous_id: str
    user_id: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)  # identify traits; email/phone only hashed
    click_ids: dict[str, str] = field(default_factory=dict)  # e.g. {"rclid": "..."}
    session_id: str | None = None
    session_number: int = 0
    last_seen: float = 0.0
    page_sessions: dict[str, str] = field(default_factory=dict)  # integration id -> session of its last page
    click_ids_at: dict[str, int] = field(default_factory=dict)  # click id name -> epoch ms its value was first seen
    cookies: dict[str, str] = field(default_factory=dict)  # the site's vendor cookies (and a generated _fbp/_fbc)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def from_json(cls, anonymous_id: str, data: bytes | str) -> Profile:
        """A stored profile; one that cannot be read starts afresh (logged) instead of stopping
        the processor on every event of that visitor."""
        try:
            stored = orjson.loads(data)
            profile = cls.from_dict(stored)
            if not all(
                isinstance(value, dict)
                for value in (profile.traits, profile.click_ids, profile.click_ids_at, profile.cookies)
            ):
                raise TypeError("traits, click ids and cookies must be objects")
            return profile
        except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            log.error("the stored profile of visitor %s cannot be read (%s): starting afresh", anonymous_id, exc)
            return cls(anonymous_id=anonymous_id)
