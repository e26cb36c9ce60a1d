"""The run's report: one JSON line per distinct URL, written as results arrive.

Lines are handed to a writer thread in batches (every FLUSH_INTERVAL_S, or sooner when many
are waiting), so the manifest costs no thread hop per URL and is at most a moment behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import orjson

from bulkfetch.models import Result
from bulkfetch.writers import Writers

FLUSH_INTERVAL_S = 0.5
FLUSH_LINES = 2000


class Manifest:
    """An async context: open (truncating), record results, and flush everything on the way out."""

    def __init__(self, path: Path, writers: Writers) -> None:
        self._path = path
        self._writers = writers
        self._file: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Manifest:
        self._file = await self._writers.run(_open, self._path)
        self._flusher = asyncio.create_task(self._flush_forever(), name="bulkfetch-manifest")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait([self._flusher])
            if not self._flusher.cancelled() and (error := self._flusher.exception()):
                raise error
        await self._flush()
        if self._file is not None:
            await self._writers.run(self._file.close)

    def add(self, result: Result) -> None:
        self._pending.append(orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE))
        if len(self._pending) >= FLUSH_LINES:
            self._wake.set()

    async def _flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        if self._pending and self._file is not None:
            lines, self._pending = self._pending, []
            await self._writers.run(_write, self._file, lines)


def _open(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def _write(file: BinaryIO, lines: list[bytes]) -> None:
    file.writelines(lines)
    file.flush()
