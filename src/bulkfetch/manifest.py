"""The run's report: one JSON line per distinct URL, written as results arrive (and the same
results' rows in the state database, in the same writer-thread job, after the line).

Lines are handed to a writer thread in batches (every FLUSH_INTERVAL_S, or sooner when much
is waiting), so the manifest costs no thread hop per URL and is at most a moment behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import orjson

from bulkfetch.models import Prior, Result, Validators
from bulkfetch.state import StateWriter
from bulkfetch.writers import Writers, write_all

FLUSH_INTERVAL_S = 0.5
FLUSH_BYTES = 256 * 1024


class Manifest:
    """An async context: open (truncating), record results, and flush everything on the way out.
    Only the scheduling process writes it, also with --workers."""

    def __init__(
        self, path: Path, writers: Writers, *, state: StateWriter | None = None
    ) -> None:
        self._path = path
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
        self._file = await self._writers.run(_open, self._path)
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
        if self._flusher is not None:
            await self._flusher
        await self._flush()
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
        if (self._pending or rows) and self._file is not None:
            data, self._pending = self._pending, bytearray()
            await self._writers.run(self._write, self._file, data, rows)

    def _write(self, file: BinaryIO, data: bytearray, rows: list[tuple[object, ...]]) -> None:
        """Thread side: the manifest lines, then the same results' state rows."""
        write_all(file.fileno(), [data])  # FileIO.write may take less than it is given
        if self._state is not None:
            self._state.save(rows)


def _open(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb", buffering=0)  # unbuffered: a batch, a write()
