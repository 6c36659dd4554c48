"""Sessions: taken from the event when it carries one, derived otherwise.

A derived session ends after ``timeout`` seconds without events; the number counts the
visitor's sessions (1 on the first visit).
"""

from __future__ import annotations

import uuid
from typing import Any

from datafly.processing.profile import Profile


def apply_session(event: dict[str, Any], profile: Profile, at: float, timeout: float) -> None:
    context = event["context"]
    given = context.get("session")
    if given:
        sid = str(given["id"])
        number = given.get("number")
        if number is None:
            number = profile.session_number if sid == profile.session_id else profile.session_number + 1
            given["number"] = max(1, number)
        profile.session_id = sid
        profile.session_number = int(given["number"])
    else:
        expired = profile.session_id is None or at - profile.last_seen > timeout
        if expired:
            profile.session_number += 1
            profile.session_id = uuid.uuid4().hex
        context["session"] = {"id": profile.session_id, "number": profile.session_number}
    profile.last_seen = max(profile.last_seen, at)
