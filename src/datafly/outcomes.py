"""Every outcome a delivery-log row, a dead letter or a debugger entry can carry, in one place:
the store, the processor, the worker, the health view, the templates and the UI script all use
these (the UI gets :data:`VIEW` as JSON in every page). Imports nothing of the package."""

from __future__ import annotations

import enum

__all__ = ["VIEW", "LogOutcome"]


class LogOutcome(enum.StrEnum):
    # a vendor's answer, per item (datafly.destinations.base.Outcome) and per request
    DONE = "done"
    RETRY = "retry"
    REJECTED = "rejected"
    AUTH_FAILED = "auth_failed"
    SPLIT = "split"  # refused as a whole for some items: sent again in halves
    PARTIAL = "partial"  # a request whose items got different outcomes
    # decided before sending
    SKIPPED = "skipped"  # the destination cannot send the event (its reason says why)
    FILTERED = "filtered"  # consent not granted for the integration
    # the processor's, not an integration's
    UNPROCESSABLE = "unprocessable"  # set aside: processing raised (a dead letter to replay)
    TRIMMED = "trimmed"  # identify traits dropped to keep a profile within its bound


VIEW: dict[str, tuple[str, str]] = {
    # outcome or debugger stage -> (label, tone): tones are the CSS badge classes ok | warn | bad | muted
    LogOutcome.DONE: ("delivered", "ok"),
    LogOutcome.RETRY: ("retrying", "warn"),
    LogOutcome.REJECTED: ("rejected", "bad"),
    LogOutcome.AUTH_FAILED: ("auth failed", "bad"),
    LogOutcome.SPLIT: ("split", "warn"),
    LogOutcome.PARTIAL: ("partial", "warn"),
    LogOutcome.SKIPPED: ("skipped", "muted"),
    LogOutcome.FILTERED: ("filtered", "muted"),
    LogOutcome.UNPROCESSABLE: ("unprocessable", "bad"),
    LogOutcome.TRIMMED: ("traits trimmed", "muted"),
    "granted": ("granted", "ok"),
    "request": ("request", "ok"),
    "duplicate": ("duplicate", "muted"),
    "not_mapped": ("not mapped", "muted"),
    "invalid": ("invalid", "bad"),
    "received": ("received", "muted"),
}
