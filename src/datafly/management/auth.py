"""Who may use the management API: users, sessions, API tokens, CSRF, login throttling.

- Users are documents (kind ``user``) with an Argon2id password hash. The first admin is
  ``admin`` with ``DATAFLY_ADMIN_PASSWORD``; while its password was never changed in the UI,
  a new value of the variable replaces it at the next start (the way to recover access), and
  then every session and API token of ``admin`` ends as after a password change.
- A login opens a session (kind ``session``, stored by the SHA-256 of its token, never the
  token). It ends after ``DATAFLY_SESSION_IDLE`` seconds without use (default 2 h) and at the
  latest ``DATAFLY_SESSION_MAX`` seconds after login (default 24 h).
- API tokens (kind ``token``) are long random strings, shown once, stored as SHA-256, with an
  optional expiry (``expires_at``); an expired token answers 401 and is deleted. ``POST
  /api/logout`` with an API token revokes that token.
- A password change ends every other session of that user and revokes every API token of that
  user, except the credential that made the change: whoever knew the old password may have
  opened sessions or created tokens with it.
- Failed logins are counted per client address and user name (:class:`LoginThrottle`), so a
  stranger failing for ``admin`` locks out only himself; a client failing for many user names
  is stopped too.
- Cookie-authenticated requests that change state must carry the session's CSRF token in the
  ``X-CSRF-Token`` header (or a ``csrf_token`` form field); Bearer requests need none.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from datafly.store.base import Backend

__all__ = [
    "ADMIN",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Authenticator",
    "LoginThrottle",
    "Principal",
    "csrf_valid",
]

log = logging.getLogger("datafly.management")
ADMIN = "admin"
SESSION_COOKIE = "datafly_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_SESSION_PREFIX = "dfs_"
_TOKEN_PREFIX = "dft_"
_TOUCH_EVERY = 60.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``csrf`` is set for cookie sessions only."""

    user: str
    via: str  # cookie (the UI's session cookie) | bearer (a session token) | token (an API token)
    credential_id: str  # the session's or token's document id
    csrf: str = ""

    @property
    def needs_csrf(self) -> bool:
        return self.via == "cookie"


class LoginThrottle:
    """At most ``limit`` failures per ``window`` seconds per key (a client and user name pair,
    or a client). At most ``max_keys`` keys are remembered: beyond that the oldest are dropped."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        found = self._failures.setdefault(key, deque())
        while found and found[0] < now - self.window:
            found.popleft()
        return found

    def retry_after(self, *keys: str) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        wait = 0.0
        for key in keys:
            recent = self._recent(key)
            if len(recent) >= self.limit:
                wait = max(wait, recent[0] + self.window - self.clock())
        return wait

    def failed(self, *keys: str) -> None:
        for key in keys:
            recent = self._recent(key)
            recent.append(self.clock())
            while len(recent) > self.limit:  # only the last `limit` failures matter
                recent.popleft()
        if len(self._failures) > self.max_keys:
            kept = {k: v for k, v in self._failures.items() if self._recent(k)}
            if len(kept) > self.max_keys // 2:  # still too many: keep the latest half
                latest = sorted(kept.items(), key=lambda kv: kv[1][-1])[-(self.max_keys // 2) :]
                kept = dict(latest)
            self._failures = kept

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)


class Authenticator:
    def __init__(
        self,
        backend: Backend,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        env = os.environ if env is None else env
        self.backend = backend
        self.clock = clock
        self.idle = float(env.get("DATAFLY_SESSION_IDLE", "") or 7200)
        self.max_age = float(env.get("DATAFLY_SESSION_MAX", "") or 86400)
        self._admin_password = env.get("DATAFLY_ADMIN_PASSWORD", "")
        self.hasher = PasswordHasher()
        self.throttle = LoginThrottle()  # per (client, user name): 10 failures in 5 minutes
        self.client_throttle = LoginThrottle(limit=50)  # per client, whatever the user names
        self._dummy_hash = ""

    # users ---------------------------------------------------------------------------------
    async def ensure_admin(self) -> None:
        """Create the first admin from ``DATAFLY_ADMIN_PASSWORD`` (see the module docstring)."""
        password = self._admin_password
        existing = await self.backend.get_document("user", ADMIN)
        if not password:
            if existing is None:
                log.warning("DATAFLY_ADMIN_PASSWORD is not set: nobody can log in to the management UI")
            return
        if existing is not None and (
            existing.get("password_from") != "env" or await self._verify(existing, password)
        ):
            return
        await self.backend.put_document(
            "user",
            ADMIN,
            {"password_hash": await self._hash(password), "password_from": "env", "created_at": self.clock()},
        )
        if existing is not None:  # a new password from the environment: access recovered, as after a change
            ended = await self._revoke_all("session", ADMIN, keep="")
            revoked = await self._revoke_all("token", ADMIN, keep="")
            log.warning(
                "the admin password was replaced from DATAFLY_ADMIN_PASSWORD: %d session(s) ended, "
                "%d API token(s) revoked",
                ended,
                revoked,
            )

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, user: Mapping[str, Any] | None, password: str) -> bool:
        stored = str(user.get("password_hash", "")) if user else ""
        if not stored:
            if not self._dummy_hash:
                self._dummy_hash = await self._hash(secrets.token_hex(8))
            stored = self._dummy_hash  # same work for unknown users: no timing oracle
        try:
            return await asyncio.to_thread(self.hasher.verify, stored, password) and user is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def change_password(self, principal: Principal, current: str, new: str) -> dict[str, int] | None:
        """Change the caller's password; None when ``current`` is wrong.

        Then every other session of the user ends and every API token of the user is revoked,
        except the credential ``principal`` used: ``{"sessions": n, "tokens": m}`` ended."""
        user = principal.user
        found = await self.backend.get_document("user", user)
        if found is None or not await self._verify(found, current):
            return None
        found.update(password_hash=await self._hash(new), password_from="ui", changed_at=self.clock())
        await self.backend.put_document("user", user, found)
        return {
            "sessions": await self._revoke_all("session", user, keep=principal.credential_id),
            "tokens": await self._revoke_all("token", user, keep=principal.credential_id),
        }

    async def _revoke_all(self, kind: str, user: str, keep: str) -> int:
        revoked = 0
        for doc in await self.backend.list_documents(kind):
            if doc.get("user") == user and doc["id"] != keep:
                revoked += bool(await self.backend.delete_document(kind, str(doc["id"])))
        return revoked

    # sessions ------------------------------------------------------------------------------
    async def login(self, username: str, password: str) -> tuple[str, str] | None:
        """``(session token, csrf token)`` for the right password, else None."""
        user = await self.backend.get_document("user", username) if username else None
        if not await self._verify(user, password):
            return None
        token = _SESSION_PREFIX + secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.clock()
        await self.backend.put_document(
            "session",
            _digest(token),
            {"user": username, "csrf": csrf, "created_at": now, "last_seen": now},
        )
        await self._purge_sessions()
        return token, csrf

    async def _purge_sessions(self) -> None:
        for doc in await self.backend.list_documents("session"):
            if not self._session_alive(doc):
                await self.backend.delete_document("session", str(doc["id"]))

    def _session_alive(self, doc: Mapping[str, Any]) -> bool:
        now = self.clock()
        return (
            now - float(doc.get("last_seen", 0)) < self.idle
            and now - float(doc.get("created_at", 0)) < self.max_age
        )

    async def _session(self, token: str, via: str) -> Principal | None:
        doc_id = _digest(token)
        doc = await self.backend.get_document("session", doc_id)
        if doc is None:
            return None
        if not self._session_alive(doc):
            await self.backend.delete_document("session", doc_id)
            return None
        if self.clock() - float(doc.get("last_seen", 0)) > _TOUCH_EVERY:
            doc["last_seen"] = self.clock()
            await self.backend.put_document("session", doc_id, doc)
        return Principal(str(doc["user"]), via, doc_id, str(doc.get("csrf", "")) if via == "cookie" else "")

    async def logout(self, principal: Principal) -> None:
        """End the caller's session, or revoke the caller's API token."""
        kind = "token" if principal.via == "token" else "session"
        await self.backend.delete_document(kind, principal.credential_id)

    # API tokens ----------------------------------------------------------------------------
    async def create_token(self, user: str, name: str, expires_at: float | None = None) -> tuple[str, dict[str, Any]]:
        """A new API token for ``user``: its value (shown once) and its stored view.
        ``expires_at`` (epoch seconds): from then on it answers 401; None: it does not expire."""
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        doc = {
            "name": name,
            "user": user,
            "hint": token[:8] + "…",
            "created_at": self.clock(),
            "last_used": None,
            "expires_at": expires_at,
        }
        doc_id = _digest(token)
        await self.backend.put_document("token", doc_id, doc)
        return token, {**doc, "id": doc_id}

    def _token_alive(self, doc: Mapping[str, Any]) -> bool:
        expires = doc.get("expires_at")
        return expires is None or self.clock() < float(expires)

    async def list_tokens(self) -> list[dict[str, Any]]:
        """The API tokens that have not expired (expired ones are deleted)."""
        alive = []
        for doc in await self.backend.list_documents("token"):
            if self._token_alive(doc):
                alive.append({**doc, "expires_at": doc.get("expires_at")})
            else:
                await self.backend.delete_document("token", str(doc["id"]))
        return alive

    async def revoke_token(self, token_id: str) -> bool:
        return await self.backend.delete_document("token", token_id)

    async def _token(self, token: str) -> Principal | None:
        doc_id = _digest(token)
        doc = await self.backend.get_document("token", doc_id)
        if doc is None:
            return None
        if not self._token_alive(doc):
            await self.backend.delete_document("token", doc_id)
            return None
        last = doc.get("last_used")
        if last is None or self.clock() - float(last) > _TOUCH_EVERY:
            doc["last_used"] = self.clock()
            await self.backend.put_document("token", doc_id, doc)
        return Principal(str(doc["user"]), "token", doc_id)

    # requests ------------------------------------------------------------------------------
    async def authenticate(self, authorization: str, cookie_token: str) -> Principal | None:
        """The caller of a request from its ``Authorization`` header or session cookie."""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            bearer = value.strip()
            if bearer.startswith(_TOKEN_PREFIX):
                return await self._token(bearer)
            if bearer.startswith(_SESSION_PREFIX):
                return await self._session(bearer, "bearer")
            return None
        if cookie_token.startswith(_SESSION_PREFIX):
            return await self._session(cookie_token, "cookie")
        return None


def csrf_valid(principal: Principal, presented: str) -> bool:
    return bool(principal.csrf) and hmac.compare_digest(principal.csrf.encode(), presented.encode())
