"""Reading the URL lists: on a daemon thread, a block at a time, a few blocks ahead at most.

A thread, because a source may be a pipe or a terminal whose read blocks for as long as its
writer likes; a daemon one, because such a read cannot be interrupted and must not hold up exit.
It reads the raw descriptor: a buffered reader's lock, held by a blocked read, would abort the
interpreter at exit.
Parsing and planning happen on that thread too, so the event loop only receives jobs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

from bulkfetch.errors import RecordFailed, SourceError
from bulkfetch.lists import shards
from bulkfetch.lists.plan import Planner, Rejected, Repeat
from bulkfetch.lists.syntax import parse_line
from bulkfetch.models import Job, Prior, Refetch, Result, Resume, Shard, Status, UrlLine
from bulkfetch.show.outgoing import make_result
from bulkfetch.store.state import StateReader

READ_BYTES = 64 * 1024
ITEMS_PER_BATCH = 1000  # of a Listed source: about what a block of a list file holds
ITEM_WAIT_S = 0.005  # an item of a Listed source waits at most this long for company
BATCHES_AHEAD = 4

MAX_LINE_BYTES = 1024 * 1024
SHOWN_BYTES = 200  # of a line too long: what the manifest names it by

# A Result: decided without a request (a bad line, a skipped file); a Repeat: said, not run.
Planned = Job | Result | Repeat
_Post = Callable[[tuple[list[Planned], int] | BaseException | None], None]


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # as the user wrote it; "-" is standard input
    fd: int


@dataclass(frozen=True, slots=True)
class Listed:
    """A list given as Python objects (the library): URLs, or (URL, NAME) pairs. Nothing is
    split into lines, so a URL holding a line break is one bad URL, never two entries."""

    name: str
    items: Iterable[str | tuple[str, str]] | AsyncIterable[str | tuple[str, str]]


def _total_bytes(sources: Sequence[Source | Listed]) -> int:
    sizes = []
    for source in sources:
        if isinstance(source, Listed):
            return 0
        info = os.fstat(source.fd)
        if not stat.S_ISREG(info.st_mode):
            return 0
        sizes.append(info.st_size - os.lseek(source.fd, 0, os.SEEK_CUR))
    return sum(sizes)


class _Stopped(Exception):
    pass


_END = object()  # the iterable has ended


@dataclass(frozen=True, slots=True)
class _Raised:
    error: Exception


def _listed_line(source: str, lineno: int, item: object) -> UrlLine:
    """An item of a Python list: a URL, or a (URL, NAME) pair."""
    url: object = item
    name: object = None
    if not isinstance(item, str) and isinstance(item, tuple | list) and len(item) == 2:
        url, name = item
    return UrlLine(where=f"{source}:{lineno}", url=str(url).strip(),
                   name=str(name) if name else None)


class Intake:
    """Yields batches of planned entries, in list order, with back-pressure on the reader."""

    def __init__(
        self,
        sources: Sequence[Source | Listed],
        planner: Planner,
        *,
        state: Callable[[], StateReader] | None = None,
        refetch: Refetch = Refetch.REVALIDATE,
        find_resume: Callable[[str], Resume | None] | None = None,
        shard: Shard | None = None,
    ) -> None:
        self._shard = shard
        self._sources = sources
        self._planner = planner
        self._open_state = state
        self._state: StateReader | None = None
        self._refetch = refetch
        self._find_resume = find_resume
        self.read_bytes = 0  # the reader thread's position in the lists, all together
        self.listed = 0  # entries planned so far (the reader thread's count)
        self.read_all = False  # set by the reader thread once every list is read to its end
        self.total_bytes = _total_bytes(sources)  # 0 when a source is a pipe or a terminal
        self._room = threading.Semaphore(BATCHES_AHEAD)
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pulls: list[concurrent.futures.Future[None]] = []  # async iterables' pulls

    async def batches(self) -> AsyncIterator[tuple[list[Planned], int]]:
        """Batches, each with how many bytes of the lists had been read when it was made."""
        loop = self._loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[list[Planned], int] | BaseException | None] = asyncio.Queue()

        def post(item: tuple[list[Planned], int] | BaseException | None) -> None:
            self._room.acquire()
            if self._stopped:
                raise _Stopped
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                raise _Stopped from None

        thread = threading.Thread(
            target=self._read_all, args=(post,), name="bulkfetch-intake", daemon=True
        )
        thread.start()
        try:
            while (item := await inbox.get()) is not None:
                self._room.release()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stopped = True
            self._room.release()
            for pull in self._pulls:  # an async iterable waiting for its next item
                pull.cancel()

    def _decide(self, items: list[Job | Rejected | Repeat]) -> list[Planned]:
        self.listed += sum(1 for item in items if not isinstance(item, Repeat))
        """Attach what earlier runs left (a whole file, a cut-off body); with --skip-existing,
        settle a whole file right here."""
        jobs = [(item.url, item.path) for item in items if isinstance(item, Job)]
        priors = self._state.priors(jobs) if self._state and jobs else {}
        return [self._decide_one(item, priors.get(item.url)) for item in items]

    def _decide_one(self, item: Job | Rejected | Repeat, prior: Prior | None) -> Planned:
        if isinstance(item, Rejected):
            return item.as_result()
        if isinstance(item, Repeat):
            return item
        if self._find_resume is not None and (resume := self._find_resume(item.url)):
            item = dataclasses.replace(item, resume=resume)
        if prior is None:
            return item
        if self._refetch is Refetch.SKIP_EXISTING:
            return make_result(item.url, Status.SKIPPED, path=prior.path, size=prior.bytes,
                                   sha256=prior.sha256)
        return dataclasses.replace(item, prior=prior)

    def _read_all(self, post: _Post) -> None:
        try:
            self._state = self._open_state() if self._open_state else None
        except (OSError, sqlite3.Error) as exc:  # a full disk, a state that is no database
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            with contextlib.suppress(_Stopped):
                post(RecordFailed(f"cannot read the state: {reason.lower()}"))
            return
        try:
            for source in self._sources:
                if isinstance(source, Listed):
                    self._read_items(source, post)
                else:
                    self._read_one(source, post)
            self.read_all = True
            post(None)
        except _Stopped:
            pass
        except Exception as exc:  # a bug here must surface on the loop, not die with the thread
            with contextlib.suppress(_Stopped):
                post(exc)
        finally:
            if self._state is not None:
                self._state.close()

    def _read_items(self, source: Listed, post: _Post) -> None:
        """A Python iterable, pulled on a thread of its own (`_pull`), so that an item goes
        out within ITEM_WAIT_S of being yielded however slowly the next one comes."""
        pulled: queue.Queue[object] = queue.Queue(maxsize=ITEMS_PER_BATCH)
        if isinstance(source.items, AsyncIterable):
            assert self._loop is not None
            self._pulls.append(asyncio.run_coroutine_threadsafe(
                self._pull_async(source.items, pulled), self._loop))
        else:
            threading.Thread(target=self._pull, args=(source.items, pulled), daemon=True,
                             name="bulkfetch-iterable").start()
        planned: list[Job | Rejected | Repeat] = []
        lineno, first = 0, 0.0
        while True:
            wait = max(0.0, first + ITEM_WAIT_S - time.monotonic()) if planned else 0.1
            try:
                item = pulled.get(timeout=wait)
            except queue.Empty:
                if planned:  # the iterable pauses: what it gave goes out now
                    post((self._decide(planned), self.read_bytes))
                    planned = []
                elif self._stopped:
                    raise _Stopped from None
                continue
            if item is _END:
                break
            if isinstance(item, _Raised):
                raise SourceError(f"{source.name}: the iterable raised "
                                  f"{type(item.error).__name__}: {item.error}") from item.error
            lineno += 1
            first = first if planned else time.monotonic()
            self._keep(self._planner.plan(_listed_line(source.name, lineno, item)), planned)
            if len(planned) >= ITEMS_PER_BATCH:
                post((self._decide(planned), self.read_bytes))
                planned = []
        if planned:
            post((self._decide(planned), self.read_bytes))

    def _pull(self, items: Iterable[object], pulled: queue.Queue[object]) -> None:
        """Thread side: the iterable's items into `pulled`, until it ends or the run stops;
        never one more `next()` once the run has stopped. (A `next()` under way then cannot
        be interrupted: this daemon thread ends when it returns, and takes nothing more.)"""
        try:
            for item in items:
                if not self._hand_over(item, pulled):
                    return
        except Exception as exc:  # the caller's iterable broke: the list broke off
            self._hand_over(_Raised(exc), pulled)
            return
        self._hand_over(_END, pulled)

    def _hand_over(self, item: object, pulled: queue.Queue[object]) -> bool:
        while not self._stopped:
            with contextlib.suppress(queue.Full):
                pulled.put(item, timeout=0.1)
                return True
        return False

    async def _pull_async(self, items: AsyncIterable[object],
                          pulled: queue.Queue[object]) -> None:
        """Loop side: an async iterable's items into `pulled`, on the run's loop (where the
        caller's iterable lives); cancelled when the run stops."""
        try:
            async for item in items:
                if not await self._hand_over_async(item, pulled):
                    return
        except Exception as exc:  # the caller's iterable broke: the list broke off
            await self._hand_over_async(_Raised(exc), pulled)
            return
        await self._hand_over_async(_END, pulled)

    async def _hand_over_async(self, item: object, pulled: queue.Queue[object]) -> bool:
        while not self._stopped:
            try:
                pulled.put_nowait(item)
            except queue.Full:  # the reader thread is behind: a poll, it is another thread
                await asyncio.sleep(ITEM_WAIT_S)
            else:
                return True
        return False

    def _keep(
        self, item: Job | Rejected | Repeat | None, planned: list[Job | Rejected | Repeat]
    ) -> None:
        if item is not None and (self._shard is None or shards.keeps(self._shard, item)):
            planned.append(item)

    def _read_one(self, source: Source, post: _Post) -> None:
        tail = b""
        lineno = 0
        skipping = False  # inside a line too long to plan: its bytes are dropped to its end
        while True:
            try:
                block = os.read(source.fd, READ_BYTES)
            except OSError as exc:
                raise SourceError(f"{source.name}: cannot read: {exc.strerror or exc}") from exc
            self.read_bytes += len(block)
            lines = (tail + block).split(b"\n") if block else ([tail] if tail else [])
            tail = lines.pop() if block else b""
            if skipping and lines:
                del lines[0]  # the end of the long line
                skipping = False
            elif skipping:
                tail = b""
            planned: list[Job | Rejected | Repeat] = []
            for raw in lines:
                lineno += 1
                if len(raw) > MAX_LINE_BYTES:  # whole, yet too long: the limit is exact
                    self._keep(_too_long(source.name, lineno, raw), planned)
                elif (line := parse_line(raw, source=source.name, lineno=lineno)) is not None:
                    self._keep(self._planner.plan(line), planned)
            if len(tail) > MAX_LINE_BYTES:  # it fails alone; the lines after it still run
                lineno += 1
                self._keep(_too_long(source.name, lineno, tail), planned)
                tail, skipping = b"", True
            if planned:
                post((self._decide(planned), self.read_bytes))
            if not block:
                return


def _too_long(source: str, lineno: int, start: bytes) -> Rejected:
    where = f"{source}:{lineno}"
    shown = start[:SHOWN_BYTES].decode("utf-8", "replace")
    # Named by its start and its place: two long lines may well start alike.
    return Rejected(where, f"{shown}… [{where}]", f"{where}: line too long (over "
                    f"{MAX_LINE_BYTES // (1024 * 1024)} MiB); skipped")
