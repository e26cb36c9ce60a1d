"""The run's report: one JSON line per distinct URL, written as results arrive (and the same
results' rows in the state database, in the same writer-thread job, after the line).

Lines are handed to a writer thread in batches (every FLUSH_INTERVAL_S, or sooner when much
is waiting), so the manifest costs no thread hop per URL and is at most a moment behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import orjson

from bulkfetch.errors import RecordFailed
from bulkfetch.models import Prior, Result, Validators
from bulkfetch.store.folder import open_folder
from bulkfetch.store.state import StateWriter
from bulkfetch.store.threads import Writers, write_all

RUNS_KEPT = 10  # earlier runs' manifests kept under runs/
FLUSH_INTERVAL_S = 0.5
FLUSH_BYTES = 256 * 1024


class Manifest:
    """An async context: open (truncating), record results, and flush everything on the way out.
    Only the scheduling process writes it, also with --workers."""

    def __init__(
        self, path: Path, writers: Writers, *, state: StateWriter | None = None,
        keep_in: Path | None = None, on_failure: Callable[[RecordFailed], None] | None = None,
    ) -> None:
        self._path = path
        self._on_failure = on_failure
        self.failure: RecordFailed | None = None  # once set, nothing more is written
        self._keep_in = keep_in
        self._writers = writers
        self._state = state
        self._file: BinaryIO | None = None
        # One growing buffer: orjson hands back each line in a 4 KiB allocation, so keeping
        # the lines themselves until the next flush would cost 4 KiB per URL.
        self._pending = bytearray()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> Manifest:
        self._file = await self._writers.run(_open, self._path, self._keep_in)
        self._flusher = asyncio.create_task(self._flush_forever(), name="bulkfetch-manifest")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The flusher is told to stop, not cancelled: on 3.11, wait_for can swallow a
        # cancellation that arrives as its inner wait completes.
        self._closing = True
        self._wake.set()
        try:
            if self._flusher is not None:
                await self._flusher
            await self._flush()
        finally:  # each runs to its end, even through a cancellation
            if self._file is not None:
                await self._writers.run(self._file.close)
            if self._state is not None:
                await self._writers.run(self._state.close)

    def add(
        self,
        result: Result,
        *,
        url: str | None = None,
        validators: Validators | None = None,
        prior: Prior | None = None,
    ) -> None:
        """Record a result; `url` (as listed, for the state) defaults to `result.url`."""
        if self.failure is not None:
            return
        self._pending += orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE)
        if self._state is not None:
            self._state.add(url or result.url, result, validators, prior)
        if len(self._pending) >= FLUSH_BYTES:
            self._wake.set()

    async def _flush_forever(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        rows = self._state.take() if self._state is not None else []
        if (self._pending or rows) and self._file is not None and self.failure is None:
            data, self._pending = self._pending, bytearray()
            try:
                await self._writers.run(self._write, self._file, data, rows)
            except (OSError, sqlite3.Error) as exc:  # SQLite says "database or disk is full"
                self._fail(exc)

    def _fail(self, exc: OSError | sqlite3.Error) -> None:
        what = ("the state" if isinstance(exc, sqlite3.Error)
                else f"the manifest {str(self._path)!r}")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.failure = RecordFailed(f"cannot write {what}: {reason.lower()}")
        self._pending.clear()
        if self._on_failure is not None and not self._closing:  # else the caller raises it
            self._on_failure(self.failure)

    def _write(self, file: BinaryIO, data: bytearray, rows: list[tuple[object, ...]]) -> None:
        """Thread side: the manifest lines, then the same results' state rows. Lines that do
        not all fit (a full disk) are taken back whole: the manifest never ends mid-line."""
        fd = file.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            write_all(fd, [data])  # FileIO.write may take less than it is given
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            raise
        if self._state is not None:
            self._state.save(rows)


def _open(path: Path, keep_in: Path | None) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_in is not None:
        _keep(path, keep_in)
    # Never through a link planted at its name; unbuffered: a batch, a write().
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o666)
    return open(fd, "wb", buffering=0)


def _keep(path: Path, keep_in: Path) -> None:
    """Move the last run's manifest into `keep_in` (named by when it was last written), and
    remove all but the newest RUNS_KEPT there; by descriptors, never through a link. A runs/
    that is not a folder of ours (a link, a file) is left alone, and nothing is kept."""
    with contextlib.suppress(OSError):
        info = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(info.st_mtime_ns // 10**9))
        home = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            runs = open_folder(home, keep_in.name)
            try:
                os.rename(path.name, f"manifest-{stamp}.{info.st_mtime_ns % 10**9:09d}Z.jsonl",
                          src_dir_fd=home, dst_dir_fd=runs)
                kept = sorted(n for n in os.listdir(runs)
                              if n.startswith("manifest-") and n.endswith(".jsonl"))
                for old in kept[:-RUNS_KEPT]:
                    with contextlib.suppress(OSError):
                        os.unlink(old, dir_fd=runs)
            finally:
                os.close(runs)
        finally:
            os.close(home)
