"""What every helper process of ``datafly serve`` does first: never outlive the server."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal


def die_with_parent(parent: int) -> bool:
    """Ask Linux to kill this process when its parent dies (SIGKILL included), and ignore Ctrl-C
    and SIGTERM: Ctrl-C reaches the whole process group, and a service manager's stop (systemd,
    a container runtime) every process of the service; the parent decides, drains and ends its
    helpers itself. False if the parent is already gone."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return os.getppid() == parent  # (the parent may have died before the request took effect)
