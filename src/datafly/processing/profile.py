"""The visitor profile: what the platform remembers of one anonymous id between events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
