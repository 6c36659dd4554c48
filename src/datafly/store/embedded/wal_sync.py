"""fsync of a SQLite WAL file in a helper process: the gateway's loop never waits for the disk.

The inbox commits with ``synchronous=NORMAL`` (the commit writes the WAL and returns) and asks
this helper to fsync the WAL file; a request is answered only once an fsync that began after its
commit has returned. That is what ``synchronous=FULL`` does at commit time, moved out of the
event loop. A process, not a thread: a thread would have to take the GIL back from the busy loop
after every fsync (measured: no gain with a thread).

The protocol is 8-byte tokens over two pipes: the parent writes the number of the last commit,
the helper fsyncs and writes the same number back (``token | _FAILED`` if the fsync failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import subprocess
import sys
from collections.abc import Callable

from datafly.runtime.children import die_with_parent

_TOKEN = struct.Struct("<q")
_FAILED = 1 << 62


class WalSyncer:
    """Runs the helper and reports finished fsyncs to ``on_synced(token, ok)`` in the loop."""

    def __init__(self, wal_path: str, on_synced: Callable[[int, bool], None]) -> None:
        self.wal_path = wal_path
        self.on_synced = on_synced
        self._process: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = b""

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "datafly.store.embedded.wal_sync", self.wal_path, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self._process.stdout is not None
        os.set_blocking(self._process.stdout.fileno(), False)
        self._loop.add_reader(self._process.stdout.fileno(), self.read_replies)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def request(self, token: int) -> bool:
        """Ask for an fsync covering commit ``token``; False if the helper is gone."""
        if self._process is None or self._process.stdin is None:
            return False
        try:
            self._process.stdin.write(_TOKEN.pack(token))
        except (BrokenPipeError, OSError):
            return False
        return True

    def read_replies(self) -> None:
        """Report the replies that have come (never blocks; the loop calls it when the pipe is
        readable, and the committer polls it while it waits on purpose)."""
        assert self._process is not None and self._process.stdout is not None
        try:
            data = os.read(self._process.stdout.fileno(), 4096)
        except BlockingIOError:
            return
        if not data:  # the helper is gone: whoever waits is told, and the caller falls back
            self._stop_reading()
            self.on_synced(-1, False)
            return
        self._buffer += data
        while len(self._buffer) >= _TOKEN.size:
            (value,) = _TOKEN.unpack_from(self._buffer)
            self._buffer = self._buffer[_TOKEN.size :]
            self.on_synced(value & ~_FAILED, not value & _FAILED)

    def _stop_reading(self) -> None:
        if self._loop is not None and self._process is not None and self._process.stdout is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._process.stdout.fileno())

    def close(self) -> None:
        self._stop_reading()
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None


def _helper(wal_path: str, parent: int) -> int:
    if not die_with_parent(parent):
        return 0
    fd = os.open(wal_path, os.O_RDONLY)
    directory = os.open(os.path.dirname(wal_path) or ".", os.O_RDONLY)
    first = True
    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer.fileno()
    pending = b""
    while True:
        data = os.read(stdin, 4096)
        if not data:
            return 0
        pending += data
        whole = len(pending) - len(pending) % _TOKEN.size
        if not whole:
            continue
        (token,) = _TOKEN.unpack_from(pending, whole - _TOKEN.size)  # the latest covers the rest
        pending = pending[whole:]
        try:
            os.fsync(fd)
            if first:  # the WAL file's own name, once
                os.fsync(directory)
                first = False
            reply = token
        except OSError:
            reply = token | _FAILED
        os.write(stdout, _TOKEN.pack(reply))


if __name__ == "__main__":
    sys.exit(_helper(sys.argv[1], int(sys.argv[2])))
