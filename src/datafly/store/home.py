"""The server's home directory (``DATAFLY_HOME``): private to the user that runs the server.

It holds visitor profiles, the delivery log, dead letters and the secret key, so it is made
``0700`` and every file in it ``0600``, files of an older version included. The SQLite files
are created ``0600`` before SQLite opens them; SQLite gives its ``-wal`` and ``-shm`` files the
permissions of the database file.
"""

from __future__ import annotations

import contextlib
import os
import stat

__all__ = ["private_file", "private_home"]


def private_home(home: str) -> None:
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.chmod(home, 0o700)
    with os.scandir(home) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and stat.S_IMODE(entry.stat().st_mode) & 0o077:
                with contextlib.suppress(OSError):
                    os.chmod(entry.path, 0o600)


def private_file(path: str) -> None:
    """Create ``path`` empty with mode ``0600`` unless it exists."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
