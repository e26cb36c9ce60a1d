"""Atomic file writing: a body is written to a temp file beside its final path, then renamed.

The event loop never blocks on the disk, and it pays one thread hop per `FLUSH_BYTES` of body
(one in all for a small body) instead of one per chunk or per file operation. Every thread job
runs to its end even when the task is cancelled meanwhile; the cancellation is delivered after,
so a temp file is never left behind and a completed rename is never left unreported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
from pathlib import Path

from bulkfetch.models import SafeRelPath
from bulkfetch.writers import Writers, settle

FLUSH_BYTES = 256 * 1024
TEMP_PREFIX = ".bulkfetch-"
TEMP_SUFFIX = ".part"
_IOV_MAX = 1024
_temp_ids = itertools.count()  # next() on a count is atomic under the GIL
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


class Sink:
    """Where bodies go: the --out folder, and the threads that write into it."""

    def __init__(self, root: Path, writers: Writers) -> None:
        self.root = root
        self.writers = writers
        self._real_root = os.path.realpath(root)
        self._known_dirs: set[str] = set()

    def open(self, rel: SafeRelPath) -> PendingFile:
        return PendingFile(self, rel)

    def ensure_dir(self, folder: str) -> None:
        """Create `folder` and check that it really lies inside --out (no symlink leads out)."""
        if folder in self._known_dirs:
            return
        os.makedirs(folder, exist_ok=True)
        real = os.path.realpath(folder)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise OSError(f"folder {folder!r} leads outside --out (through a symlink)")
        self._known_dirs.add(folder)


class PendingFile:
    """One body on its way to disk; hashed and counted as it is written."""

    def __init__(self, sink: Sink, rel: SafeRelPath) -> None:
        self._sink = sink
        self.final = os.path.join(sink.root, rel)
        self._temp = ""
        self._fd = -1
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._flushing: asyncio.Future[None] | None = None  # at most one write in flight
        self._hash = hashlib.sha256()
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)
        if self._buffered >= FLUSH_BYTES:
            await self._wait_flush()
            chunks, self._buffer, self._buffered = self._buffer, [], 0
            self._flushing = self._sink.writers.submit(self._write, chunks)

    async def commit(self) -> str:
        """Write what is left, close, and rename into place; returns the sha256 hex digest."""
        chunks, self._buffer = self._buffer, []
        try:
            await self._wait_flush()
            return await self._sink.writers.run(self._commit, chunks)
        except BaseException:
            await self.discard()
            raise

    async def discard(self) -> None:
        """Forget the body: the temp file goes, nothing appears at the final path."""
        flushing, self._flushing = self._flushing, None
        self._buffer = []
        if flushing is not None:
            with contextlib.suppress(Exception):
                await settle(flushing, defer_cancel=True)
        await self._sink.writers.run(self._discard)

    async def _wait_flush(self) -> None:
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            await settle(flushing)

    # Below: thread side. Each runs whole on a writer thread; never two at once for one file.

    def _write(self, chunks: list[bytes]) -> None:
        if self._fd < 0:
            folder = os.path.dirname(self.final)
            self._sink.ensure_dir(folder)
            self._temp, self._fd = _create_temp(folder)
        for chunk in chunks:
            self._hash.update(chunk)
        _write_all(self._fd, chunks)

    def _commit(self, chunks: list[bytes]) -> str:
        self._write(chunks)
        fd, self._fd = self._fd, -1
        os.close(fd)
        os.replace(self._temp, self.final)
        self._temp = ""
        return self._hash.hexdigest()

    def _discard(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        if self._temp:
            temp, self._temp = self._temp, ""
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def _create_temp(folder: str) -> tuple[str, int]:
    """A new temp file in `folder`; O_EXCL makes a name left by an earlier run safe to meet."""
    while True:
        name = os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{next(_temp_ids)}{TEMP_SUFFIX}")
        try:
            return name, os.open(name, _OPEN_FLAGS, 0o666)
        except FileExistsError:
            continue


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """writev until every byte is down: a regular file may still take less than asked."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    while views:
        done = os.writev(fd, views[:_IOV_MAX])
        i = 0
        while i < len(views) and done >= len(views[i]):
            done -= len(views[i])
            i += 1
        views = views[i:]
        if done:
            views[0] = views[0][done:]
