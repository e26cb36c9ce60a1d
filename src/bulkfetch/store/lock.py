"""One run per --out at a time: an advisory lock on OUT/.bulkfetch/lock, held for the whole run.

flock is released by the kernel when the process ends in any way (SIGKILL included), so a
crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class Locked(Exception):
    """Another process holds the lock."""


@contextlib.contextmanager
def hold(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a link planted at its name would have us truncate someone else's file.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            out = path.parent.parent
            raise Locked(f"another bulkfetch run (pid {holder}) is using {out}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
