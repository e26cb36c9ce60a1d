"""The run: the scheduler on one event loop, attempts on it or in worker processes, signals,
the manifest and the tally."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from bulkfetch.errors import EXIT_SIGNAL_BASE, RecordFailed
from bulkfetch.http import client
from bulkfetch.lists.intake import Intake, Listed, Source
from bulkfetch.lists.plan import Planner
from bulkfetch.models import Job, Result, Settings, Summary, Validators
from bulkfetch.schedule import workers
from bulkfetch.schedule.frontier import Frontier
from bulkfetch.schedule.retry import RetryPolicy
from bulkfetch.schedule.scheduler import (
    Executor,
    Room,
    Scheduler,
    local_executor,
    window_for,
)
from bulkfetch.show.events import Observer
from bulkfetch.show.tally import Tally
from bulkfetch.store.layout import PART_SUFFIX, PARTIAL_DIR, Layout
from bulkfetch.store.manifest import Manifest
from bulkfetch.store.state import StateReader, StateWriter
from bulkfetch.store.threads import Writers

Companion = Callable[[], Coroutine[object, object, None]]  # a display's refresh loop


class Signals(enum.Enum):
    """What a run does with SIGINT, SIGTERM and SIGHUP (on the main thread only)."""

    LEAVE = "leave"  # the host's: a library's default (SIGINT still stops the run cleanly)
    STOP = "stop"  # the first stops the run cleanly; a second goes where it went before
    STOP_THEN_EXIT = "exit"  # the CLI's: the first stops cleanly, a second exits at once


class StopToken(Protocol):
    """What a caller sets to end a run as SIGTERM would: a `threading.Event`, an
    `asyncio.Event`, anything with `is_set()`."""

    def is_set(self) -> bool: ...


STOP_POLL_S = 0.05  # how often the stop tokens are looked at


def run(
    settings: Settings,
    sources: Sequence[Source | Listed],
    observer: Observer,
    *,
    companion: Companion | None = None,
    extras: client.Extras | None = None,
    processes: int = 1,
    signals: Signals = Signals.LEAVE,
    stops: Sequence[StopToken] = (),
    room: Room | None = None,
) -> Summary:
    """Run the whole job on a new event loop.

    `companion` (a display's refresh loop) runs beside the job and is cancelled when it ends.
    With `processes` > 1, attempts are made by that many forked workers (forked here, before
    the loop and its threads exist) while this process schedules, writes the manifest and
    shows progress. With Signals.LEAVE on the main thread, asyncio's own SIGINT handling
    (it cancels the run) still ends the run cleanly, as SIGINT.
    """
    extras = extras or client.Extras()
    pool = workers.spawn(processes, settings, extras) if processes > 1 else None
    # asyncio.Runner turns SIGINT into a cancel of the run when Python's handler is in place.
    sigint_cancels = (signals is Signals.LEAVE
                      and threading.current_thread() is threading.main_thread()
                      and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    try:
        with asyncio.Runner() as runner:
            return runner.run(_main(settings, sources, observer, companion, extras, pool,
                                    _Ending(signals, stops, sigint_cancels), room))
    finally:
        if pool is not None:
            pool.reap()


async def run_async(
    settings: Settings,
    sources: Sequence[Source | Listed],
    observer: Observer,
    *,
    extras: client.Extras | None = None,
    stops: Sequence[StopToken] = (),
    room: Room | None = None,
) -> Summary:
    """The run on the caller's event loop, in this process: one session on that loop. The
    caller's signals stay the caller's; cancelling the call stops the run cleanly (interrupted
    lines for what had begun, the manifest flushed) and raises CancelledError."""
    return await _main(settings, sources, observer, None, extras or client.Extras(), None,
                       _Ending(Signals.LEAVE, stops, sigint_cancels=False), room)


# SIGHUP: the terminal closed or the ssh session dropped; a run ends as on SIGTERM.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Ending:
    """Why a run ends early, and the one way it does: its main task cancelled, once."""

    def __init__(self, signals: Signals, stops: Sequence[StopToken],
                 sigint_cancels: bool) -> None:
        self.signals = signals
        self.stops = stops
        self.sigint_cancels = sigint_cancels
        self.signum: int | None = None
        self.stopped = False  # by a stop token
        self.failure: RecordFailed | None = None  # the manifest or the state: not written
        self._main: asyncio.Task[Summary] | None = None
        self._restore: Callable[[], None] = lambda: None

    def start(self, main: asyncio.Task[Summary]) -> None:
        self._main = main

    def _end(self) -> bool:
        first = self.signum is None and not self.stopped and self.failure is None
        if first and self._main is not None:
            self._main.cancel()
        return first

    def on_signal(self, signum: int) -> None:
        if self.signum is not None and self.signals is Signals.STOP_THEN_EXIT:
            # A second signal: the user does not want to wait for the cleanup.
            os._exit(EXIT_SIGNAL_BASE + signum)
        if self._end():
            self.signum = signum
        if self.signals is Signals.STOP:
            self._restore()  # a second signal goes where it went before the run

    def on_stop(self) -> None:
        if self._end():
            self.stopped = True

    def on_record_failure(self, failure: RecordFailed) -> None:
        if self._end():
            self.failure = failure

    def explains(self) -> bool:
        """The cancel that reached the run is one of these (else it is the caller's)."""
        if self.signum is None and not self.stopped and self.failure is None:
            if not self.sigint_cancels:
                return False
            self.signum = signal.SIGINT  # asyncio.Runner's handler cancelled the run
        if self._main is not None:
            self._main.uncancel()
        return True

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """STOP_SIGNALS call `on_signal` on the running loop, for as long as this lasts (or,
        with Signals.STOP, until the first); then the handlers that were there before are
        put back (a host program's own). Off the main thread (the library in an engine's
        worker thread) signals are never ours."""
        if (self.signals is Signals.LEAVE
                or threading.current_thread() is not threading.main_thread()):
            yield
            return
        loop = asyncio.get_running_loop()
        # A signal ignored when we started stays ignored: `nohup` (SIGHUP), a shell's
        # background job (SIGINT) asked for exactly that.
        before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        before = {signum: old for signum, old in before.items() if old is not signal.SIG_IGN}

        def restore() -> None:
            for signum, previous in before.items():
                loop.remove_signal_handler(signum)  # leaves SIG_DFL or Python's default
                if previous is not None:
                    signal.signal(signum, previous)
            before.clear()

        for signum in before:
            loop.add_signal_handler(signum, self.on_signal, signum)
        self._restore = restore
        try:
            yield
        finally:
            restore()

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """The stop tokens looked at every STOP_POLL_S while the body runs."""
        if not self.stops:
            yield
            return

        async def watch() -> None:
            # A poll: a token is set from any thread (a threading.Event), or from a signal.
            while not any(token.is_set() for token in self.stops):  # noqa: ASYNC110
                await asyncio.sleep(STOP_POLL_S)
            self.on_stop()

        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.wait([task])


@contextlib.asynccontextmanager
async def beside(
    companion: Companion | None,
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
    sources: Sequence[Source | Listed],
    observer: Observer,
    companion: Companion | None,
    extras: client.Extras,
    pool: workers.Pool | None,
    ending: _Ending,
    room: Room | None,
) -> Summary:
    main = asyncio.current_task()
    assert main is not None
    ending.start(main)
    tally = Tally()
    started = time.monotonic()
    with ending.handling_signals():
        async with beside(companion), ending.watching():
            try:
                await _fetch_all(settings, sources, observer, tally, extras, pool,
                                 ending.on_record_failure, room)
            except asyncio.CancelledError:
                if not ending.explains():
                    raise
    if ending.failure is not None:
        raise ending.failure
    early = ending.signum is not None or ending.stopped
    return tally.summary(elapsed_s=time.monotonic() - started, interrupted_by=ending.signum,
                         stopped=ending.stopped, manifest=str(settings.manifest),
                         kept_for_resume=_kept_for_resume(settings.out) if early else 0)


def _kept_for_resume(out: Path) -> int:
    """Bytes of cut-off bodies kept in .bulkfetch/partial/ for the next run to continue."""
    total = 0
    with contextlib.suppress(OSError), os.scandir(out / PARTIAL_DIR) as entries:
        for entry in entries:
            if entry.name.endswith(PART_SUFFIX):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
    return total


async def _fetch_all(
    settings: Settings,
    sources: Sequence[Source | Listed],
    observer: Observer,
    tally: Tally,
    extras: client.Extras,
    pool: workers.Pool | None,
    on_record_failure: Callable[[RecordFailed], None],
    room: Room | None,
) -> None:
    writers = Writers()
    state_path = Layout.of(settings.out, settings.shard).state
    try:
        layout = Layout.of(settings.out, settings.shard)
        # The run before this one keeps its manifest (the default one) under runs/.
        keep_in = layout.runs if settings.manifest == layout.manifest else None
        async with Manifest(
            settings.manifest, writers,
            state=StateWriter(state_path, manifest=settings.manifest), keep_in=keep_in,
            on_failure=on_record_failure,
        ) as manifest:
            def record(result: Result, job: Job | None, validators: Validators | None) -> None:
                prior = job.prior if job else None
                manifest.add(result, url=job.url if job else None, validators=validators,
                             prior=prior)
                tally.add(result.status, result.bytes, result.received)
                observer.finished(result)

            scheduler = Scheduler(
                Frontier(per_host=settings.per_host, rate=settings.rate,
                         host_rate=settings.host_rate),
                RetryPolicy(retries=settings.retries, base_s=settings.backoff_s,
                            retry_after_cap_s=settings.max_retry_after_s),
                record,
                observer,
                window=window_for(settings.concurrency, settings.window),
                host_errors=settings.host_errors,
                room=room,
            )
            # A bucket's objects are not checked one by one (a HEAD each): the state is the
            # bucket's own, fetched from it at the start.
            files = settings.out if settings.bucket is None else None
            try:
                async with (
                    _executor(settings, extras, writers, scheduler, observer, pool) as executor,
                ):
                    intake = Intake(
                        sources,
                        Planner(reserved=_reserved(settings)),
                        shard=settings.shard,
                        state=functools.partial(StateReader, state_path, files),
                        refetch=settings.refetch,
                        find_resume=client.resume_finder(settings, writers),
                    )
                    broken = await scheduler.run(intake, executor)
            except asyncio.CancelledError:
                scheduler.cut_off()  # after the executor: what settled on its way out is recorded
                raise
            if broken is not None:
                raise broken
        if manifest.failure is not None:  # found by the last flush, once the run was over
            raise manifest.failure
    finally:
        writers.close()


@contextlib.asynccontextmanager
async def _executor(
    settings: Settings,
    extras: client.Extras,
    writers: Writers,
    scheduler: Scheduler,
    observer: Observer,
    pool: workers.Pool | None,
) -> AsyncIterator[Executor]:
    if pool is not None:
        async with pool.executor(scheduler, observer) as remote:
            yield remote
        return
    limit = settings.concurrency
    async with (
        client.target(settings, writers, limit=limit) as sink,
        client.fetcher(settings, extras, sink, observer, limit=limit,
                       borrow=scheduler.borrow) as fetcher,
        local_executor(fetcher, limit, scheduler) as local,
    ):
        yield local


def _reserved(settings: Settings) -> frozenset[str]:
    try:
        inside = settings.manifest.resolve().relative_to(settings.out.resolve())
    except ValueError:
        return frozenset()
    return frozenset({inside.as_posix()})
