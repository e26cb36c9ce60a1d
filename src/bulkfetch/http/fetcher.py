"""One URL's attempt: the request, the answer's verdict, the body streamed to the sink.

Every fault of an attempt becomes a `Failure` kind and one line in one table
(`failures.py`); whether another attempt follows is the retry policy's decision.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import aiohttp

from bulkfetch.http import failures, ranges
from bulkfetch.http.failures import ShortBody, ShortRange, TooBig
from bulkfetch.http.headers import disposition_filename, http_date, parse_retry_after
from bulkfetch.http.pace import BytePace
from bulkfetch.http.redirects import Hops
from bulkfetch.http.split import Borrow, Segment, Split, plan, splittable
from bulkfetch.models import (
    Attempt,
    Failure,
    Job,
    Resume,
    SafeRelPath,
    Ticket,
    Timeouts,
    Validators,
)
from bulkfetch.show.events import Observer
from bulkfetch.show.outgoing import lossless
from bulkfetch.store.folder import FolderSink
from bulkfetch.store.layout import renamed
from bulkfetch.store.segments import SplitFile
from bulkfetch.store.sink import Body, Partial, Pending, Target

CHUNK_BYTES = 256 * 1024
RESUMABLE_BYTES = 4 * 1024 * 1024
# A big body is written out in bigger flushes: a quarter of the thread hops per MB (1 GiB:
# 2.3 s -> 1.7 s). Only a few at once, so that memory stays bounded at any -c. The chunks stay
# the size of asyncio's socket reads, which iter_chunked then hands over without joining them
# (1 MiB chunks: 1.9-2.6 s; 256 KiB: 1.8-1.9 s). Figures: bench/NOTES.md, "Levers measured".
BIG_FLUSH_BYTES = 1024 * 1024
BIG_STREAMS = 8






Cut = Callable[[int | None, int], None]  # an attempt cut off: its HTTP status, bytes received


class _Trace:
    """What an attempt has learnt so far: what a failure reports and leaves to continue from."""

    __slots__ = ("content_type", "filename", "final_url", "http_status", "kept", "path",
                 "received", "validators")

    def __init__(self, kept: Resume | None) -> None:
        self.http_status: int | None = None
        self.validators: Validators | None = None
        self.kept = kept
        self.received = 0
        self.final_url: str | None = None
        self.content_type: str | None = None
        self.path: str | None = None  # named by the answer (--content-disposition)
        self.filename: str | None = None  # the name as the answer gave it

    def failed(self, error: str, failure: Failure) -> Attempt:
        return Attempt(http_status=self.http_status, error=error, failure=failure,
                       resume=self.kept, received=self.received, final_url=self.final_url)


class Slot:
    """A request's hold on one of the connector's slots, from before it is sent until its body
    has arrived; then `ended` tells the scheduler, and the file is written out without it."""

    __slots__ = ("_ended", "_semaphore")

    def __init__(self, semaphore: asyncio.Semaphore, ended: Callable[[], None]) -> None:
        self._semaphore = semaphore
        self._ended = ended

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._semaphore.release()
        self._ended()


class Fetcher:
    """Makes attempts over one shared session; at most `semaphore` at once. Which attempt comes
    next, and whether there is one, is the scheduler's business (`schedule/scheduler.py`)."""

    def __init__(
        self,
        hops: Hops,
        semaphore: asyncio.Semaphore,
        sink: Target,
        *,
        timeouts: Timeouts,
        max_bytes: int | None = None,
        conditional: bool = True,
        content_disposition: bool = False,
        remote_time: bool = False,
        pace: BytePace | None = None,
        split: int = 1,
        min_split_size: int = 20 << 20,
        borrow: Borrow | None = None,
        observer: Observer,
    ) -> None:
        self._hops = hops
        self._semaphore = semaphore
        self._big_streams = 0
        self._sink = sink
        self._timeouts = timeouts
        self._max_bytes = max_bytes
        self._conditional = conditional
        self._content_disposition = content_disposition
        self._remote_time = remote_time
        self._pace = pace
        self._split = split if borrow is not None and isinstance(sink, FolderSink) else 1
        self._min_split = min_split_size
        self._borrow = borrow
        self._unsplittable: set[str] = set()  # URLs whose server would not split after all
        self._observer = observer

    async def attempt(
        self, ticket: Ticket, *, ended: Callable[[], None], cut: Cut | None = None,
    ) -> Attempt:
        """One attempt at the ticket's job; never raises for a network or file fault.
        `ended` is called as soon as the request no longer holds its slot; `cut`, when the
        attempt is cancelled (a signal), with what had come by then (HTTP status, bytes)."""
        trace = _Trace(ticket.resume)
        try:
            return await self._attempt(ticket, trace, ended)
        except asyncio.CancelledError:
            if cut is not None:
                cut(trace.http_status, trace.received)
            raise

    async def _attempt(self, ticket: Ticket, trace: _Trace, ended: Callable[[], None]
                       ) -> Attempt:
        job = ticket.job
        try:
            async with Slot(self._semaphore, ended):
                got = await self._exchange(job, trace)
            if isinstance(got, Attempt):
                return got
            sha256 = await got.commit(expect_sha256=job.sha256)
            return Attempt(
                http_status=trace.http_status, size=got.offset + got.size, sha256=sha256,
                validators=trace.validators, received=got.size, final_url=trace.final_url,
                content_type=trace.content_type, path=trace.path,
            )
        except Exception as exc:
            fault = failures.classify(exc, self._timeouts)
            if fault is None:  # not a fault of the network, the server or the disk: a bug
                raise
            trace.http_status = fault.http_status or trace.http_status
            return trace.failed(fault.words, fault.failure)

    async def _exchange(self, job: Job, trace: _Trace) -> Pending | Attempt:
        """Send the request and take the answer: its body on the way to disk, or the verdict."""
        resume = trace.kept
        if resume is not None and resume.segments:
            return await self._split_again(job, trace, resume)
        get = self._hops.get(job.url, headers=_range(resume) if resume else self._conditions(job))
        async with get as resp:
            trace.http_status = resp.status
            trace.validators = _validators(resp)
            trace.final_url = str(resp.url)
            trace.content_type = resp.headers.get("Content-Type")
            if resp.status == 304 and job.prior is not None:
                return Attempt(http_status=304, not_modified=True, validators=trace.validators,
                               final_url=trace.final_url)
            span = None
            try:
                if resp.status == 206:
                    span = _span(resp, resume)
                elif resume is not None and resp.status in (200, 416):
                    raise ranges.Mismatch(f"HTTP {resp.status}")  # changed, or no ranges
            except ranges.Mismatch as exc:
                if resume is not None:
                    trace.kept = None  # start over: never join two versions
                    await self._sink.drop_partial(job.url)
                if resp.status != 200:
                    where = f"at byte {resume.offset}" if resume else "the whole body"
                    return trace.failed(f"cannot resume {where}: {exc}", Failure.TRANSFER)
            if not 200 <= resp.status < 300:
                return dataclasses.replace(_refused(resp), resume=trace.kept,
                                           final_url=trace.final_url)
            announced = span.complete if span else resp.content_length or 0
            if self._max_bytes is not None and announced > self._max_bytes:
                return trace.failed(_too_big(announced, self._max_bytes), Failure.FINAL)
            self._observer.responded(job, resp.content_length)
            if (validator := self._splits(job, resp, trace)) is not None:
                return await self._split_anew(job, resp, trace, validator)
            return await self._receive(job, resp, trace, span)

    # --split: a big body over several connections (http/split.py).

    def _splits(self, job: Job, resp: aiohttp.ClientResponse, trace: _Trace) -> str | None:
        if self._split < 2 or trace.kept is not None or job.url in self._unsplittable:
            return None
        return splittable(resp, self._split, self._min_split)

    async def _split_anew(self, job: Job, resp: aiohttp.ClientResponse, trace: _Trace,
                          validator: str) -> Pending | Attempt:
        total = resp.content_length or 0
        self._named(job, resp, trace)
        segments = plan(total, self._split, self._min_split)
        file = self._split_file(job, trace, validator, total, resp)
        await file.open([s.row() for s in segments], fresh=True)
        return await self._run_split(job, trace, file, segments, validator, total, resp)

    async def _split_again(self, job: Job, trace: _Trace, resume: Resume) -> Pending | Attempt:
        """Every segment of a split body continues where an earlier attempt left it."""
        assert resume.segments is not None and resume.total is not None
        segments = [Segment(*row) for row in resume.segments]
        self._named(job, None, trace, resume.name)  # the name the first answer gave
        file = self._split_file(job, trace, resume.validator, resume.total, None)
        await file.open(resume.segments, fresh=False)
        quoted = resume.validator.startswith('"')
        trace.validators = Validators(resume.validator if quoted else None,
                                      None if quoted else resume.validator)
        return await self._run_split(job, trace, file, segments, resume.validator,
                                     resume.total, None)

    def _split_file(self, job: Job, trace: _Trace, validator: str, total: int,
                    resp: aiohttp.ClientResponse | None) -> SplitFile:
        assert isinstance(self._sink, FolderSink)
        modified = (http_date(resp.headers.get("Last-Modified"))
                    if self._remote_time and resp is not None else None)
        return SplitFile(self._sink, SafeRelPath(trace.path or job.path),
                         self._sink.partial(job.url, validator, 0, total),
                         mtime=modified.timestamp() if modified is not None else None,
                         name=trace.filename)

    async def _run_split(self, job: Job, trace: _Trace, file: SplitFile,
                         segments: list[Segment], validator: str, total: int,
                         first: aiohttp.ClientResponse | None) -> Pending | Attempt:
        # Without a scheduler to borrow from (a worker process continuing a split body that
        # an earlier --split run kept), every piece goes over the attempt's own connection.
        split = Split(job, file, segments, validator=validator, total=total, hops=self._hops,
                      borrow=self._borrow, connections=self._split, observer=self._observer,
                      pace=self._pace)
        try:
            await split.run(first)
        except ranges.Mismatch as exc:  # another version, or no ranges after all: start over
            trace.kept = None
            await file.discard()
            if first is not None:
                self._unsplittable.add(job.url)
            return trace.failed(f"cannot fetch in segments: {exc}", Failure.TRANSFER)
        except BaseException:
            trace.kept = await file.discard(keep=True, segments=split.rows())
            trace.received = file.size
            raise
        trace.received = file.size
        return file

    async def _receive(
        self, job: Job, resp: aiohttp.ClientResponse, trace: _Trace,
        span: ranges.Continuation | None,
    ) -> Pending:
        """The whole body into a pending file or object (not yet published)."""
        big = (resp.content_length or 0) >= RESUMABLE_BYTES and self._big_streams < BIG_STREAMS
        modified = http_date(resp.headers.get("Last-Modified")) if self._remote_time else None
        body = Body(job.url, resp.content_length, trace.content_type,
                    replaces=job.prior is not None,
                    mtime=modified.timestamp() if modified is not None else None)
        self._named(job, resp, trace)
        pending = self._sink.open(
            SafeRelPath(trace.path or job.path), body,
            partial=self._partial(job, resp, trace.kept, span),
            flush_bytes=BIG_FLUSH_BYTES if big else CHUNK_BYTES,
        )
        self._big_streams += big
        try:
            await self._stream(job, resp, pending)
            if span is not None and not span.whole:  # a capped range: keep it, ask for more
                raise ShortRange(f"the server sent bytes {pending.offset}-{span.end - 1} of "
                                 f"{span.complete:,}; the rest is asked for next")
        except BaseException as exc:
            trace.kept = await pending.discard(keep=not isinstance(exc, OSError | TooBig))
            raise
        finally:
            self._big_streams -= big
            trace.received = pending.size
        return pending

    def _named(self, job: Job, resp: aiohttp.ClientResponse | None, trace: _Trace,
               filename: str | None = None) -> None:
        """--content-disposition: the answer's file name (RFC 6266, `filename*` first), or
        the one kept with a split body's pieces, in place of the URL's, for a job without a
        NAME; made safe by the URL-name rules, in the URL's folder, with its tag."""
        if not self._content_disposition or not job.auto:
            return
        if resp is not None:
            filename = disposition_filename(resp.headers.get("Content-Disposition"))
        if filename and (path := renamed(job.path, filename)) is not None:
            trace.path, trace.filename = path, filename

    def _partial(
        self, job: Job, resp: aiohttp.ClientResponse, resume: Resume | None,
        span: ranges.Continuation | None,
    ) -> Partial | None:
        """Where to keep this body so that a cut-off attempt can be continued, if it can be."""
        if not self._sink.resumable:
            return None
        if resume is not None and span is not None:
            return self._sink.partial(job.url, resume.validator, resume.offset, span.complete)
        # Keeping a partial costs a few file operations; only a big body repays them.
        if (resp.content_length or 0) < RESUMABLE_BYTES:
            return None
        validator = ranges.if_range_validator(resp.headers)
        return self._sink.partial(job.url, validator, 0, resp.content_length) if validator else None

    def _conditions(self, job: Job) -> dict[str, str] | None:
        """If-None-Match / If-Modified-Since from the earlier run, when revalidating."""
        prior = job.prior
        if prior is None or not self._conditional:
            return None
        headers = {}
        if prior.etag:
            headers["If-None-Match"] = prior.etag
        if prior.last_modified:
            headers["If-Modified-Since"] = prior.last_modified
        return headers or None

    async def _stream(
        self, job: Job, resp: aiohttp.ClientResponse, pending: Pending
    ) -> None:
        received = self._observer.received
        limit = self._max_bytes
        pace = self._pace
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            await pending.write(chunk)
            received(job, len(chunk))
            if pace is not None:  # --limit-rate: wait for the turn of the next chunk
                await pace.take(len(chunk))
            if limit is not None and pending.offset + pending.size > limit:
                raise TooBig(_too_big(pending.offset + pending.size, limit, so_far=True))
        expected = resp.content_length
        if expected is not None and pending.size != expected:
            raise ShortBody(f"body cut short: {pending.size} of {expected} bytes")


def _too_big(size: int, limit: int, *, so_far: bool = False) -> str:
    what = f"more than {limit:,} bytes arrived" if so_far else f"the body is {size:,} bytes"
    return f"{what}; --max-bytes is {limit:,}"


def _range(resume: Resume) -> dict[str, str]:
    return {"Range": f"bytes={resume.offset}-", "If-Range": resume.validator}


def _span(resp: aiohttp.ClientResponse, resume: Resume | None) -> ranges.Continuation:
    """Where a 206 goes: after the kept bytes, or, unasked, it must be the whole body."""
    if resume is not None:
        return ranges.continuation(resp.headers, resume, resp.content_length)
    got = ranges.parse_content_range(resp.headers.get("Content-Range"))
    if got is None or got.first != 0 or got.complete != got.last + 1:
        raise ranges.Mismatch(f"the server sent part of it unasked (HTTP 206, Content-Range "
                              f"{resp.headers.get('Content-Range', 'missing')!r})")
    return ranges.Continuation(end=got.complete, complete=got.complete)


def _validators(resp: aiohttp.ClientResponse) -> Validators | None:
    """The answer's validators, kept for the next run. Bytes that are not UTF-8 are kept
    escaped (`lossless`): sent back so, they match nothing, and the file is fetched again."""
    etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
    if not etag and not modified:
        return None
    return Validators(etag and lossless(etag), modified and lossless(modified))


def _refused(resp: aiohttp.ClientResponse) -> Attempt:
    """A non-2xx answer: retried when the status says a later try may work."""
    error = f"HTTP {resp.status} {resp.reason or ''}".rstrip()
    return Attempt(
        http_status=resp.status,
        error=failures.proxy_refused(resp.status, resp.reason) if resp.status == 407 else error,
        failure=Failure.STATUS,
        retry_after_s=parse_retry_after(resp.headers.get("Retry-After")),
    )
