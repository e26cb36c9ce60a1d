"""The run: one session, one connector, one semaphore, a fixed set of workers, signals, summary."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from http.cookies import Morsel

import aiohttp
import aiohttp.abc
from yarl import URL

from bulkfetch import __version__
from bulkfetch.creds import Credentials
from bulkfetch.events import Observer
from bulkfetch.fetch import CHUNK_BYTES, Fetcher
from bulkfetch.intake import Intake, Source, SourceError
from bulkfetch.manifest import Manifest
from bulkfetch.models import Job, Refetch, Result, Settings, Status, Summary, Validators
from bulkfetch.pace import Pacer
from bulkfetch.plan import STATE_DIR, Planner
from bulkfetch.retry import RetryPolicy
from bulkfetch.shard import Shard
from bulkfetch.sink import Sink
from bulkfetch.state import STATE_FILE, StateReader, StateWriter
from bulkfetch.writers import Writers

# Workers beyond the limit keep every slot busy while some of them sleep in a backoff.
SPARE_WORKERS = 0.5

_Record = Callable[[Result, Job | None, Validators | None], None]


@dataclass(frozen=True, slots=True)
class _Extras:
    """What the CLI prepared from files and the environment before the loop started."""

    ssl_context: ssl.SSLContext | bool
    credentials: Credentials
    cookies: Sequence[tuple[Morsel[str], URL]]
    shard: Shard | None


class Tally:
    """Counts kept as results arrive, so that an interrupted run can still say what it did."""

    def __init__(self, clock: float) -> None:
        self.started = clock
        self.counts = dict.fromkeys(Status, 0)
        self.bytes = 0

    def add(self, result: Result) -> None:
        self.counts[result.status] += 1
        self.bytes += result.bytes

    def summary(self, now: float, interrupted_by: int | None) -> Summary:
        return Summary(
            ok=self.counts[Status.OK],
            failed=self.counts[Status.FAILED],
            not_modified=self.counts[Status.NOT_MODIFIED],
            skipped=self.counts[Status.SKIPPED],
            bytes=self.bytes,
            elapsed_s=now - self.started,
            interrupted_by=interrupted_by,
        )


def run(
    settings: Settings,
    sources: Sequence[Source],
    observer: Observer,
    *,
    companion: Callable[[], Coroutine[object, object, None]] | None = None,
    ssl_context: ssl.SSLContext | bool = True,
    credentials: Credentials | None = None,
    cookies: Sequence[tuple[Morsel[str], URL]] = (),
    shard: Shard | None = None,
) -> Summary:
    """Run the whole job on a new event loop; SIGINT and SIGTERM stop it cleanly.

    `companion` (a display's refresh loop) runs beside the job and is cancelled when it ends.
    With `shard` (a worker process), only that shard's entries are fetched and the manifest,
    which the parent created, is appended to.
    """
    with asyncio.Runner() as runner:
        return runner.run(_main(
            settings, sources, observer, companion,
            _Extras(ssl_context, credentials or Credentials(), cookies, shard),
        ))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def handling_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call `handler(signum)` on the running loop, for as long as this lasts."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, handler, signum)
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


@contextlib.asynccontextmanager
async def beside(
    companion: Callable[[], Coroutine[object, object, None]] | None,
) -> AsyncIterator[None]:
    """Run `companion` (a display's refresh loop) beside the body; cancel it after, and raise
    what it raised."""
    task = asyncio.create_task(companion()) if companion else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error


async def _main(
    settings: Settings,
    sources: Sequence[Source],
    observer: Observer,
    companion: Callable[[], Coroutine[object, object, None]] | None,
    extras: _Extras,
) -> Summary:
    main = asyncio.current_task()
    assert main is not None
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received:  # a second signal: the user does not want to wait for the cleanup
            os._exit(128 + signum)
        received.append(signum)
        main.cancel()

    tally = Tally(time.monotonic())
    with handling_signals(on_signal):
        async with beside(companion):
            try:
                await _fetch_all(settings, sources, observer, tally, extras)
            except asyncio.CancelledError:
                if not received:
                    raise
    return tally.summary(time.monotonic(), received[0] if received else None)


async def _fetch_all(
    settings: Settings,
    sources: Sequence[Source],
    observer: Observer,
    tally: Tally,
    extras: _Extras,
) -> None:
    limit = settings.concurrency
    writers = Writers()
    state_path = settings.out / STATE_DIR / STATE_FILE
    try:
        async with (
            Manifest(
                settings.manifest, writers, state=StateWriter(state_path),
                append=extras.shard is not None,
            ) as manifest,
            _session(settings, extras) as session,
        ):
            def record(result: Result, job: Job | None, validators: Validators | None) -> None:
                prior = job.prior if job else None
                url = job.url if job else None
                manifest.add(result, url=url, validators=validators, prior=prior)
                tally.add(result)
                observer.finished(result)

            sink = Sink(settings.out, writers)
            fetcher = Fetcher(
                session,
                asyncio.Semaphore(limit),
                sink,
                policy=RetryPolicy(retries=settings.retries),
                timeouts=settings.timeouts,
                max_redirects=settings.max_redirects,
                max_bytes=settings.max_bytes,
                credentials=extras.credentials,
                pacer=Pacer(rate=settings.rate, host_rate=settings.host_rate),
                conditional=settings.refetch is Refetch.REVALIDATE,
                observer=observer,
            )
            reserved = _reserved(settings)
            intake = Intake(
                sources,
                Planner(reserved=reserved),
                state=functools.partial(StateReader, state_path, settings.out),
                refetch=settings.refetch,
                find_resume=sink.find_resume,
                shard=extras.shard,
            )
            jobs: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=2 * limit)
            workers = limit + max(1, int(limit * SPARE_WORKERS))
            async with asyncio.TaskGroup() as group:
                feed = group.create_task(_feed(intake, jobs, record, observer, workers=workers))
                for _ in range(workers):
                    group.create_task(_work(fetcher, jobs, record))
            if (broken := feed.result()) is not None:
                raise broken
    finally:
        writers.close()


def _session(settings: Settings, extras: _Extras) -> aiohttp.ClientSession:
    agent = settings.user_agent or f"bulkfetch/{__version__}"
    headers = {"User-Agent": agent, "Accept-Encoding": "identity"}
    # A header given twice on the command line is sent twice; a default is replaced.
    extra = {name.lower() for name, _ in settings.headers}
    base = {k: v for k, v in headers.items() if k.lower() not in extra}
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=settings.concurrency, limit_per_host=settings.per_host, ssl=extras.ssl_context
        ),
        cookie_jar=_cookie_jar(extras.cookies),
        timeout=aiohttp.ClientTimeout(
            total=settings.timeouts.total_s,
            sock_connect=settings.timeouts.connect_s,
            sock_read=settings.timeouts.read_s,
        ),
        headers=[*base.items(), *settings.headers],
        auto_decompress=False,
        read_bufsize=CHUNK_BYTES,  # smaller, and the socket pauses and resumes per chunk
    )


def _cookie_jar(cookies: Sequence[tuple[Morsel[str], URL]]) -> aiohttp.abc.AbstractCookieJar:
    """No jar at all without --cookies: a million answers' Set-Cookie must not pile up."""
    if not cookies:
        return aiohttp.DummyCookieJar()
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: also for hosts given as IP addresses
    for morsel, url in cookies:
        jar.update_cookies({morsel.key: morsel}, response_url=url)
    return jar


def _reserved(settings: Settings) -> frozenset[str]:
    try:
        inside = settings.manifest.resolve().relative_to(settings.out.resolve())
    except ValueError:
        return frozenset()
    return frozenset({inside.as_posix()})


async def _feed(
    intake: Intake,
    jobs: asyncio.Queue[Job | None],
    record: _Record,
    observer: Observer,
    *,
    workers: int,
) -> SourceError | None:
    """Hand the lists' jobs to the workers. A list that breaks off ends the intake, not the run:
    what is already queued still finishes, and the error is returned for the end."""
    broken = None
    try:
        async for batch, read_bytes in intake.batches():
            # Counted as listed before the queue takes them, so count and position agree.
            for _ in batch:
                observer.queued()
            observer.listing_read(read_bytes, intake.total_bytes)
            for item in batch:
                if isinstance(item, Result):
                    record(item, None, None)
                else:
                    await jobs.put(item)
    except SourceError as exc:
        broken = exc
    observer.listing_done()
    for _ in range(workers):
        await jobs.put(None)
    return broken


async def _work(fetcher: Fetcher, jobs: asyncio.Queue[Job | None], record: _Record) -> None:
    while (job := await jobs.get()) is not None:
        fetched = await fetcher.fetch(job)
        record(fetched.result, job, fetched.validators)
