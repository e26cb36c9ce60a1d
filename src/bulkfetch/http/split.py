"""--split: one big body over several connections at once, each a Range request written at
its offset (aria2c's -s). Read top-down: `plan` cuts the body into segments; `Split.run` takes
them with the attempt's own connection first (the answer already under way, then Range
requests) and with extra connections, each borrowed from the scheduler like any request
(so -c, --per-host, --rate and --host-rate hold exactly); every 206 is checked as a resume's
is (the same strong validator, the asked start, the whole length), and a segment that fails
goes on alone from where it stopped, a few times, before the attempt fails and keeps them all.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import aiohttp

from bulkfetch.http import ranges
from bulkfetch.http.failures import ShortBody
from bulkfetch.http.pace import BytePace
from bulkfetch.http.redirects import Hops
from bulkfetch.models import Job, Resume
from bulkfetch.show.events import Observer
from bulkfetch.store.segments import SplitFile

CHUNK_BYTES = 256 * 1024
SAVE_EVERY_S = 1.0  # progress saved this often, for a run killed outright
SEGMENT_TRIES = 3  # a segment's failures in a row before the attempt fails
Borrow = Callable[[Job], AbstractAsyncContextManager[None]]


@dataclass
class Segment:
    start: int
    end: int  # exclusive
    done: int  # the next byte to write

    def row(self) -> tuple[int, int, int]:
        return (self.start, self.end, self.done)


def plan(total: int, split: int, min_size: int) -> list[Segment]:
    """At most `split` segments of at least `min_size` bytes each (the last may be less)."""
    count = max(1, min(split, total // min_size))
    size = -(-total // count)
    return [Segment(start, min(start + size, total), start) for start in range(0, total, size)]


def splittable(resp: aiohttp.ClientResponse, split: int, min_size: int) -> str | None:
    """The validator to split this answer's body under, if it may be: a 200 of at least two
    segments, from a server that says it takes ranges, with a strong validator."""
    length = resp.content_length
    if split < 2 or resp.status != 200 or length is None or length < 2 * min_size:
        return None
    if resp.headers.get("Accept-Ranges", "").lower() != "bytes":
        return None
    return ranges.if_range_validator(resp.headers)


class Split:
    def __init__(self, job: Job, file: SplitFile, segments: Sequence[Segment], *,
                 validator: str, total: int, hops: Hops, borrow: Borrow | None, connections: int,
                 observer: Observer, pace: BytePace | None) -> None:
        self._job = job
        self._file = file
        self.segments = list(segments)
        self._todo = deque(s for s in self.segments if s.done < s.end)
        self._validator = validator
        self._total = total
        self._hops = hops
        self._borrow = borrow
        self._connections = connections
        self._observer = observer
        self._pace = pace
        self._saved = time.monotonic()
        self._saving = False
        self._borrowed_now = 0  # extra connections at work (the live table shows them)

    def rows(self) -> list[tuple[int, int, int]]:
        return [segment.row() for segment in self.segments]

    async def _save(self) -> None:
        """One save at a time (they share the meta file's temp name)."""
        self._saving = True
        try:
            await self._file.save(self.rows())
        finally:
            self._saved, self._saving = time.monotonic(), False

    async def run(self, first: aiohttp.ClientResponse | None) -> None:
        """Every segment written, or the first failure raised (the others stopped). Borrowed
        connections still waiting for their slot when the last byte is in are let go."""
        extra = max(0, min(self._connections, len(self._todo)) - 1) if self._borrow else 0
        workers = {asyncio.create_task(self._own(first))}
        workers |= {asyncio.create_task(self._borrowed()) for _ in range(extra)}
        try:
            while not self._whole() and workers:
                done, workers = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if (error := task.exception()) is not None:
                        raise error
            if not self._whole():  # every connection ended, and bytes are missing: a bug
                raise RuntimeError("a split body ended with segments unwritten")
        finally:
            for task in workers:
                task.cancel()
            if workers:
                await asyncio.wait(workers)
            self._borrowed_now = 0
            self._observer.connections(self._job, 1)

    def _whole(self) -> bool:
        return all(segment.done >= segment.end for segment in self.segments)

    async def _own(self, first: aiohttp.ClientResponse | None) -> None:
        """The attempt's own connection: the answer under way, for the first segment, then
        Range requests for whatever is left."""
        if first is not None:
            segment = self._todo.popleft()
            try:
                await self._take(first, segment)
            finally:
                # The rest of the body is other segments': the connection goes now, before
                # this slot's next request (never two of ours on one slot, for -c/--per-host).
                first.close()
            if segment.done < segment.end:  # cut short: it goes on by ranges
                await self._segment(segment)
        await self._work()

    async def _borrowed(self) -> None:
        """An extra connection: only once the scheduler grants its slot; none if, by then,
        every segment has been taken."""
        if not self._todo or self._borrow is None:
            return
        async with self._borrow(self._job):
            self._opened(+1)
            try:
                await self._work()
            finally:
                self._opened(-1)

    def _opened(self, change: int) -> None:
        self._borrowed_now += change
        self._observer.connections(self._job, 1 + self._borrowed_now)

    async def _work(self) -> None:
        while self._todo:
            await self._segment(self._todo.popleft())

    async def _segment(self, segment: Segment) -> None:
        """One segment to its end, by Range requests: a failure is retried from where it
        stopped; a server that caps a range gets asked for the rest."""
        failures = 0
        while segment.done < segment.end:
            before = segment.done
            try:
                await self._range(segment)
            except (aiohttp.ClientError, TimeoutError, ShortBody):
                if segment.done == before:
                    failures += 1
                if failures >= SEGMENT_TRIES:
                    raise
                await asyncio.sleep(0.5 * failures)

    async def _range(self, segment: Segment) -> None:
        headers = {"Range": f"bytes={segment.done}-{segment.end - 1}",
                   "If-Range": self._validator}
        async with self._hops.get(self._job.url, headers=headers) as resp:
            if resp.status != 206:  # another version now, or no ranges after all
                raise ranges.Mismatch(f"HTTP {resp.status} to a range request")
            kept = Resume(segment.done, self._validator, self._total)
            span = ranges.continuation(resp.headers, kept, resp.content_length)
            if span.end > segment.end:
                raise ranges.Mismatch(f"asked for bytes {segment.done}-{segment.end - 1}, the "
                                      f"server sent more (to {span.end - 1})")
            await self._take(resp, segment, until=span.end)
            if segment.done < span.end:
                raise ShortBody(f"a range cut short at byte {segment.done} of {span.end}")

    async def _take(self, resp: aiohttp.ClientResponse, segment: Segment,
                    until: int | None = None) -> None:
        """The answer's bytes at the segment's place, up to its end (the rest of a whole
        body belongs to other segments: the connection is dropped there)."""
        end = segment.end if until is None else until
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            if segment.done + len(chunk) > end:
                chunk = chunk[: end - segment.done]
            await self._file.write_at(segment.done, chunk)
            segment.done += len(chunk)
            self._observer.received(self._job, len(chunk))
            if self._pace is not None:
                await self._pace.take(len(chunk))
            if time.monotonic() - self._saved > SAVE_EVERY_S and not self._saving:
                await self._save()
            if segment.done >= end:
                return
