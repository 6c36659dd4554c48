"""Encryption at rest of integration secrets (campaign codes, API keys and secrets).

The key comes from ``DATAFLY_SECRET_KEY`` (a Fernet key, or any passphrase, which is stretched
into one), else from ``$DATAFLY_HOME/secret.key``, created on first start with mode 0600.
Losing the key makes stored secrets unreadable: the UI then asks for them again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import stat
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken

__all__ = ["KEY_ENV", "KEY_FILE", "SecretBox", "SecretUnreadable"]

KEY_ENV = "DATAFLY_SECRET_KEY"
KEY_FILE = "secret.key"
log = logging.getLogger("datafly.management")


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the current key."""


def _fernet_key(text: str) -> bytes:
    raw = text.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    # a passphrase: stretch it into a key (scrypt, fixed salt: the key must be reproducible)
    derived = hashlib.scrypt(raw, salt=b"datafly-signal-secrets", n=2**14, r=8, p=1, dklen=32)
    return base64.urlsafe_b64encode(derived)


def _key_from_file(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); restricting it to its owner", path, mode)
            os.chmod(path, 0o600)
        with open(path, "rb") as fh:
            return fh.read().strip()
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    log.info("generated a new secret key in %s (keep it with your backups)", path)
    return key


class SecretBox:
    """Encrypts and decrypts short strings; tokens are Fernet strings (``gAAAA…``)."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def open(cls, home: str, env: Mapping[str, str] | None = None) -> SecretBox:
        env = os.environ if env is None else env
        given = env.get(KEY_ENV, "")
        if given.strip():
            return cls(_fernet_key(given))
        os.makedirs(home, exist_ok=True)
        return cls(_key_from_file(os.path.join(home, KEY_FILE)))

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError) as exc:
            raise SecretUnreadable("cannot decrypt: the secret key changed since this was stored") from exc
