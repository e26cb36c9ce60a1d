"""The scheduler: the lists into the frontier, tickets out to free slots, verdicts back.

    intake thread ─batches→ feed ──add──→ Frontier ──take──→ dispatch ──start──→ Executor
                             ▲ window        ▲ later / pause / ended                │
                             └──────────── settle(ticket, attempt) ◄────────────────┘

The scheduler runs on one event loop and decides everything shared by all requests: which ticket
starts when (the frontier), what an attempt's outcome means (the retry policy), when a host is
given up on (--host-errors), and each URL's Result. An Executor only makes attempts: tasks on
this loop (`LocalExecutor`), or worker processes (`workers.ProcessExecutor`), so every limit
holds exactly whatever the number of processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from bulkfetch.errors import BulkfetchError
from bulkfetch.http.fetcher import Fetcher
from bulkfetch.lists.intake import Intake
from bulkfetch.lists.plan import Repeat
from bulkfetch.models import Attempt, Failure, Job, Result, Status, Ticket, Validators
from bulkfetch.schedule.frontier import Frontier
from bulkfetch.schedule.retry import RetryPolicy
from bulkfetch.show.events import Observer
from bulkfetch.show.outgoing import make_result

Record = Callable[[Result, Job | None, Validators | None], None]
WINDOW_PER_SLOT = 200  # entries read ahead per slot of --concurrency (see DESIGN: the window)
WINDOW_MIN = 10_000
WINDOW_REPORT_S = 1.0


class Executor(Protocol):
    def room(self) -> bool:
        """A slot is free for another attempt."""

    def start(self, ticket: Ticket) -> None:
        """Make the ticket's next attempt; report through the scheduler's `ended` and `settle`."""

    def hold(self) -> None:
        """Count a slot taken by an attempt's extra connection (`Scheduler.borrow`)."""

    def release(self) -> None:
        """That slot is free again."""


class Room(Protocol):
    """The reader of the Results (a callback's thread, a stream's consumer): while it lags,
    no attempt starts; what is already under way finishes."""

    def full(self) -> bool:
        """The reader lags too far behind."""

    async def wait(self) -> None:
        """Returns once it has caught up (or left)."""


def window_for(concurrency: int, asked: int = 0) -> int:
    return asked or max(WINDOW_MIN, WINDOW_PER_SLOT * concurrency)


class Scheduler:
    def __init__(
        self,
        frontier: Frontier,
        policy: RetryPolicy,
        record: Record,
        observer: Observer,
        *,
        window: int,
        host_errors: int = 0,
        clock: Callable[[], float] = time.monotonic,
        room: Room | None = None,
    ) -> None:
        self._frontier = frontier
        self._policy = policy
        self._record = record
        self._observer = observer
        self._window = window
        self._host_errors = host_errors
        self._clock = clock
        self._ids = itertools.count()
        self._open = 0  # tickets not yet settled for good: what the window counts
        self._listed = False
        self._changed = asyncio.Event()  # something may have become startable
        self._window_room = asyncio.Event()
        self._failing: dict[str, int] = {}  # consecutive connection failures by host
        self._given_up: dict[str, str] = {}  # hosts given up on, and why
        self._started: dict[int, Ticket] = {}  # begun and not settled: cut off by a signal
        self._cut: dict[int, tuple[int | None, int]] = {}  # their last attempt: status, bytes
        self._intake: Intake | None = None
        self._told_total = False
        self._room = room
        self._grants: dict[int, asyncio.Future[None]] = {}  # extra slots asked for, by id
        self._executor: Executor | None = None

    async def run(self, intake: Intake, executor: Executor) -> BulkfetchError | None:
        """Until every entry of the lists has its Result. A list that breaks off ends the
        intake, not the run: what is already open still finishes, and the error is returned."""
        async with asyncio.TaskGroup() as group:
            feed = group.create_task(self._feed(intake))
            group.create_task(self._dispatch(executor))
        return feed.result()

    def cut_off(self) -> None:
        """A signal stopped the run: every URL begun and not finished gets its line, so the
        manifest says what became of it. Entries never started are simply not reached. Called
        once the executor has closed, so that no attempt settles after this."""
        now = self._clock()
        for ticket in list(self._started.values()):
            job = ticket.job
            started = ticket.first_start if ticket.first_start is not None else now
            http_status, received = self._cut.get(ticket.id, (None, 0))
            self._record(make_result(
                job.url, Status.INTERRUPTED, path=job.prior.path if job.prior else None,
                http_status=http_status, attempts=ticket.attempts,
                elapsed=round(now - started, 3), error="interrupted before it finished",
                received=ticket.received + received,
            ), None, None)
        self._started.clear()

    # The executor reports here.

    def cut(self, ticket: Ticket, http_status: int | None, received: int) -> None:
        """The ticket's attempt was cut off by the signal; what had come, for its line."""
        self._cut[ticket.id] = (http_status, received)

    def ended(self, ticket: Ticket) -> None:
        """The ticket's request no longer holds its slot (the body may still be written)."""
        self._frontier.ended(ticket, self._clock())
        self._observer.ended(ticket.job)
        self._changed.set()

    def settle(self, ticket: Ticket, attempt: Attempt) -> None:
        """Decide what an attempt's outcome means: a Result, or a retry through its host."""
        now = self._clock()
        job = ticket.job
        verdict = self._policy.decide(attempt, ticket.attempts)
        if verdict.pause_host_s:
            self._frontier.pause(job.host, now + verdict.pause_host_s, now)
            self._observer.host_paused(job.host, verdict.pause_host_s)
        if verdict.give_up_host:
            self._give_up(job.host, f"gave up on host {job.host}: {verdict.give_up_host}", now)
        self._count_host(job.host, attempt, now)
        error = verdict.error
        if verdict.retry_in_s is not None:
            if not self._frontier.is_dead(job.host):
                assert attempt.error is not None
                self._observer.retrying(job, ticket.attempts, verdict.retry_in_s, attempt.error)
                retry = dataclasses.replace(ticket, resume=attempt.resume,
                                            received=ticket.received + attempt.received)
                self._started[ticket.id] = retry  # what its line says if a signal comes
                self._frontier.later(retry, now + verdict.retry_in_s)
                self._changed.set()
                return
            error = f"{attempt.error}; {self._dead(job.host)}"
        self._finish(ticket, attempt, error, now)

    def lost(self, ticket: Ticket) -> None:
        """The process making this attempt died: the ticket goes back, its attempt uncounted."""
        again = dataclasses.replace(ticket, attempts=ticket.attempts - 1)
        self._frontier.later(again, self._clock())
        self._changed.set()

    # The two tasks.

    async def _feed(self, intake: Intake) -> BulkfetchError | None:
        broken = None
        try:
            async for batch, read_bytes in intake.batches():
                for item in batch:  # counted as listed before the window takes them
                    if not isinstance(item, Repeat):
                        self._observer.queued()
                self._observer.listing_read(read_bytes, intake.total_bytes)
                self._intake = intake
                self._tell_total()
                for item in batch:
                    if isinstance(item, Result):
                        self._record(item, None, None)
                    elif isinstance(item, Repeat):
                        self._observer.notice(item.message())
                    else:
                        await self._wait_for_window()
                        self._admit(item)
        except BulkfetchError as exc:  # a list broke off, the state could not be read
            broken = exc
        self._listed = True
        self._observer.listing_done()
        self._changed.set()
        return broken

    @contextlib.asynccontextmanager
    async def borrow(self, job: Job) -> AsyncIterator[None]:
        """One more slot for `job`'s host, for an attempt's extra connection (--split): it
        waits its turn in the frontier like a ticket (so -c, --per-host, --rate, --host-rate
        and a host's pause hold it too), and is given back when the block ends."""
        ticket = Ticket(next(self._ids), job)
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._grants[ticket.id] = granted
        self._frontier.later(ticket, self._clock())  # at the front of its host's queue
        self._changed.set()
        try:
            await granted
        except BaseException:
            if granted.done() and not granted.cancelled():  # granted as it was cancelled
                self._give_back(ticket)
            raise
        try:
            yield
        finally:
            self._give_back(ticket)

    def _give_back(self, ticket: Ticket) -> None:
        assert self._executor is not None
        self._executor.release()
        self._frontier.ended(ticket, self._clock())
        self._changed.set()

    def _grant(self, ticket: Ticket, executor: Executor) -> None:
        granted = self._grants.pop(ticket.id)
        if granted.done():  # its asker was cancelled meanwhile: the slot goes straight back
            self._frontier.ended(ticket, self._clock())
            return
        executor.hold()
        granted.set_result(None)

    async def _dispatch(self, executor: Executor) -> None:
        self._executor = executor
        frontier = self._frontier
        while True:
            if self._room is not None and self._room.full():
                await self._room.wait()  # the reader of the Results lags: nothing new starts
            now = self._clock()
            if executor.room() and (ticket := frontier.take(now)) is not None:
                if ticket.id in self._grants:
                    self._grant(ticket, executor)
                else:
                    self._start(ticket, executor, now)
                continue
            if self._listed and not self._open:
                return
            self._changed.clear()
            wake = frontier.wake_at() if executor.room() else None
            if wake is None:  # the usual wait: for a slot to end or a ticket to arrive
                await self._changed.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - now)):
                    await self._changed.wait()

    # Below: the steps.

    def _admit(self, job: Job) -> None:
        ticket = Ticket(next(self._ids), job, resume=job.resume)
        self._open += 1
        if self._frontier.is_dead(job.host):
            self._finish(ticket, None, self._dead(job.host), self._clock())
            return
        self._frontier.add(ticket, self._clock())
        self._changed.set()

    def _start(self, ticket: Ticket, executor: Executor, now: float) -> None:
        first = now if ticket.first_start is None else ticket.first_start
        ticket = Ticket(ticket.id, ticket.job, ticket.attempts + 1, ticket.resume, first,
                        ticket.received)
        self._started[ticket.id] = ticket
        self._observer.started(ticket.job, ticket.attempts)
        executor.start(ticket)

    async def _wait_for_window(self) -> None:
        """Hold the intake while the window is full; say which hosts the run is waiting on."""
        reported = False
        while self._open >= self._window:
            self._tell_total()
            waiting = sorted(self._frontier.waiting(self._clock()), key=lambda w: -w.tickets)
            self._observer.window_full(tuple(
                f"{w.host} ({w.tickets:,} waiting, {w.reason})" for w in waiting[:3]
            ))
            reported = True
            self._window_room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WINDOW_REPORT_S):
                    await self._window_room.wait()
        if reported:
            self._observer.window_full(())

    def _tell_total(self) -> None:
        """Once the reader has seen the lists' end, the total is known before the window has
        taken every entry in."""
        intake = self._intake
        if intake is not None and intake.read_all and not self._told_total:
            self._told_total = True
            self._observer.listing_total(intake.listed)

    def _count_host(self, host: str, attempt: Attempt, now: float) -> None:
        """--host-errors: connection failures in a row end the host's remaining URLs."""
        if attempt.failure not in (Failure.CONNECT, Failure.TLS):
            if attempt.http_status is not None:
                self._failing.pop(host, None)
            return
        count = self._failing[host] = self._failing.get(host, 0) + 1
        if not self._host_errors or count < self._host_errors:
            return
        self._give_up(host, f"gave up on host {host}: {count} connection failures in a row "
                            f"(--host-errors {self._host_errors})", now)

    def _give_up(self, host: str, reason: str, now: float) -> None:
        """The host's waiting URLs fail now, and those still to come at once, for `reason`."""
        if self._frontier.is_dead(host):
            return
        self._given_up[host] = reason
        for doomed in self._frontier.kill(host):
            self._finish(doomed, None, reason, now)

    def _dead(self, host: str) -> str:
        return self._given_up.get(host, f"gave up on host {host}")

    def _finish(self, ticket: Ticket, attempt: Attempt | None, error: str | None,
                now: float) -> None:
        job = ticket.job
        attempt = attempt or Attempt()
        if error:
            status = Status.FAILED
        else:
            status = Status.NOT_MODIFIED if attempt.not_modified else Status.OK
        path: str | None = attempt.path or job.path
        size, sha256 = attempt.size, attempt.sha256
        prior = job.prior
        if error or attempt.not_modified:  # the earlier run's file stays: the line names it
            path, size, sha256 = (prior.path, prior.bytes, prior.sha256) if prior else (
                None, 0, None)
        started = ticket.first_start if ticket.first_start is not None else now
        result = make_result(
            job.url, status, path=path, http_status=attempt.http_status,
            size=size, sha256=None if error else sha256, attempts=ticket.attempts,
            elapsed=round(now - started, 3), error=error,
            received=ticket.received + attempt.received, final_url=attempt.final_url,
            content_type=attempt.content_type,
        )
        self._record(result, job, attempt.validators)
        self._started.pop(ticket.id, None)
        self._open -= 1
        self._window_room.set()
        self._changed.set()


class LocalExecutor:
    """Attempts as tasks on this loop, each holding one of `limit` slots."""

    def __init__(
        self, fetcher: Fetcher, limit: int, scheduler: Scheduler, group: asyncio.TaskGroup
    ) -> None:
        self._fetcher = fetcher
        self._limit = limit
        self._scheduler = scheduler
        self._group = group
        self._busy = 0

    def room(self) -> bool:
        return self._busy < self._limit

    def start(self, ticket: Ticket) -> None:
        self._busy += 1
        self._group.create_task(self._run(ticket))

    def hold(self) -> None:
        self._busy += 1

    def release(self) -> None:
        self._busy -= 1

    async def _run(self, ticket: Ticket) -> None:
        def ended() -> None:
            self._busy -= 1
            self._scheduler.ended(ticket)

        attempt = await self._fetcher.attempt(
            ticket, ended=ended, cut=lambda status, n: self._scheduler.cut(ticket, status, n))
        self._scheduler.settle(ticket, attempt)


@contextlib.asynccontextmanager
async def local_executor(
    fetcher: Fetcher, limit: int, scheduler: Scheduler
) -> AsyncIterator[LocalExecutor]:
    """The executor and the task group that owns its attempts: leaving it ends them all."""
    async with asyncio.TaskGroup() as group:
        yield LocalExecutor(fetcher, limit, scheduler, group)
