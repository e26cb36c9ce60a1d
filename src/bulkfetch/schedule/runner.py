"""The run: the scheduler on one event loop, attempts on it or in worker processes, signals,
the manifest and the tally."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path

from bulkfetch.errors import EXIT_SIGNAL_BASE, RecordFailed
from bulkfetch.http import client
from bulkfetch.lists.intake import Intake, Listed, Source
from bulkfetch.lists.plan import Planner
from bulkfetch.models import Job, Result, Settings, Summary, Validators
from bulkfetch.schedule import workers
from bulkfetch.schedule.frontier import Frontier
from bulkfetch.schedule.retry import RetryPolicy
from bulkfetch.schedule.scheduler import Executor, Scheduler, local_executor, window_for
from bulkfetch.show.events import Observer
from bulkfetch.show.tally import Tally
from bulkfetch.store.layout import PART_SUFFIX, PARTIAL_DIR, Layout
from bulkfetch.store.manifest import Manifest
from bulkfetch.store.state import StateReader, StateWriter
from bulkfetch.store.threads import Writers

Companion = Callable[[], Coroutine[object, object, None]]  # a display's refresh loop




def run(
    settings: Settings,
    sources: Sequence[Source | Listed],
    observer: Observer,
    *,
    companion: Companion | None = None,
    extras: client.Extras | None = None,
    processes: int = 1,
) -> Summary:
    """Run the whole job on a new event loop; SIGINT and SIGTERM stop it cleanly.

    `companion` (a display's refresh loop) runs beside the job and is cancelled when it ends.
    With `processes` > 1, attempts are made by that many forked workers (forked here, before
    the loop and its threads exist) while this process schedules, writes the manifest and
    shows progress.
    """
    extras = extras or client.Extras()
    pool = workers.spawn(processes, settings, extras) if processes > 1 else None
    try:
        with asyncio.Runner() as runner:
            return runner.run(_main(settings, sources, observer, companion, extras, pool))
    finally:
        if pool is not None:
            pool.reap()


async def run_async(
    settings: Settings,
    sources: Sequence[Source | Listed],
    observer: Observer,
    *,
    extras: client.Extras | None = None,
) -> Summary:
    """The run on the caller's event loop, in this process: one session on that loop. The
    caller's signals stay the caller's; cancelling the call stops the run cleanly (interrupted
    lines for what had begun, the manifest flushed) and raises CancelledError."""
    return await _main(settings, sources, observer, None, extras or client.Extras(), None,
                       signals=False)


# SIGHUP: the terminal closed or the ssh session dropped; a run ends as on SIGTERM.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def handling_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """STOP_SIGNALS call `handler(signum)` on the running loop, for as long as this lasts;
    then the handlers that were there before are put back (a host program's own). Off the
    main thread (the library in an engine's worker thread) signals are not ours."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    # A signal ignored when we started stays ignored: `nohup` (SIGHUP), a shell's background
    # job (SIGINT) asked for exactly that.
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    before = {signum: old for signum, old in before.items() if old is not signal.SIG_IGN}
    for signum in before:
        loop.add_signal_handler(signum, handler, signum)
    try:
        yield
    finally:
        for signum, previous in before.items():
            loop.remove_signal_handler(signum)  # leaves SIG_DFL or Python's default
            if previous is not None:
                signal.signal(signum, previous)


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
    *,
    signals: bool = True,
) -> Summary:
    main = asyncio.current_task()
    assert main is not None
    received: list[int] = []
    stopped: list[RecordFailed] = []  # the manifest or the state could not be written

    def on_record_failure(failure: RecordFailed) -> None:
        if not stopped:
            stopped.append(failure)
            main.cancel()

    def on_signal(signum: int) -> None:
        if received:  # a second signal: the user does not want to wait for the cleanup
            os._exit(EXIT_SIGNAL_BASE + signum)
        received.append(signum)
        main.cancel()

    tally = Tally()
    started = time.monotonic()
    with handling_signals(on_signal) if signals else contextlib.nullcontext():
        async with beside(companion):
            try:
                await _fetch_all(settings, sources, observer, tally, extras, pool,
                                 on_record_failure)
            except asyncio.CancelledError:
                if not received and not stopped:
                    raise
    if stopped:
        raise stopped[0]
    kept = _kept_for_resume(settings.out) if received else 0
    return tally.summary(elapsed_s=time.monotonic() - started,
                         interrupted_by=received[0] if received else None, kept_for_resume=kept)


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
) -> None:
    writers = Writers()
    state_path = Layout.of(settings.out, settings.shard).state
    try:
        layout = Layout.of(settings.out, settings.shard)
        # The run before this one keeps its manifest (the default one) under runs/.
        keep_in = layout.runs if settings.manifest == layout.manifest else None
        async with Manifest(
            settings.manifest, writers, state=StateWriter(state_path), keep_in=keep_in,
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
        client.fetcher(settings, extras, sink, observer, limit=limit) as fetcher,
        local_executor(fetcher, limit, scheduler) as local,
    ):
        yield local


def _reserved(settings: Settings) -> frozenset[str]:
    try:
        inside = settings.manifest.resolve().relative_to(settings.out.resolve())
    except ValueError:
        return frozenset()
    return frozenset({inside.as_posix()})
