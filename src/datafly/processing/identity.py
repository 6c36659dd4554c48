"""Identity: user id, identify traits and click ids remembered per visitor and carried on."""

from __future__ import annotations

import urllib.parse
from typing import Any

from datafly.processing.profile import Profile

CLICK_ID_PARAMS = {"rclid": "rclid", "rtid": "rclid"}  # URL parameter -> stored click id name


def click_ids_in(event: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    page = event["context"].get("page") or {}
    for text in (page.get("url"), page.get("search")):
        if not isinstance(text, str) or ("rclid=" not in text and "rtid=" not in text):
            continue
        try:
            query = urllib.parse.urlsplit(text).query if "://" in text else text.lstrip("?")
        except ValueError:  # the gateway refuses such URLs; one stored before it did carries none
            continue
        for name, value in urllib.parse.parse_qsl(query):
            target = CLICK_ID_PARAMS.get(name)
            if target and value and (target not in found or name == target):
                found[target] = value
    given = event["context"].get("clickIds")
    if isinstance(given, dict):
        found.update({str(k): str(v) for k, v in given.items() if v})
    return found


def apply_identity(event: dict[str, Any], profile: Profile) -> None:
    """Update the profile from the event, then carry the profile onto the event."""
    context = event["context"]
    if event.get("userId"):
        profile.user_id = event["userId"]
    if event["type"] == "identify" and isinstance(event.get("traits"), dict):
        profile.traits.update(event["traits"])
    given_traits = context.get("traits")
    if isinstance(given_traits, dict) and given_traits:
        profile.traits.update(given_traits)
    profile.click_ids.update(click_ids_in(event))

    if profile.user_id and not event.get("userId"):
        event["userId"] = profile.user_id
    if profile.traits:
        context["traits"] = {**profile.traits, **(given_traits or {})}
    if profile.click_ids:
        context["clickIds"] = dict(profile.click_ids)
