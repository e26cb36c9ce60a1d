"""--workers N: N forked processes that make attempts; this process schedules them.

One process moves at most ~2,300 small files/s here (aiohttp's per-request Python and the GIL
hand-offs to the writer threads), so the attempts go to workers, one per core. Everything
shared by all requests stays in the parent, on one event loop: the intake and its one dedupe
set, the frontier (per-host limit, rates, pauses), retries, the manifest and the state. So every
limit holds exactly whatever N is, and a list read from a pipe works too.

    parent ── tickets ──► worker i: its own loop, one session, connector limit = semaphore =
       ▲                            its share of --concurrency; bodies to disk, atomically
       └──── ENDED / PROGRESS / SETTLED / CRASHED rows (wire.py), batched per loop turn

A ticket goes to the worker with the most free slots (credit), so a worker busy with big
bodies gets fewer new ones. A worker that dies is noticed when its pipe closes; what it had in
flight goes back to the frontier. A worker stops when the parent's pipe closes: at the end, on
a signal, or when the parent dies (SIGKILL included: the kernel closes the pipe; PDEATHSIG as
well), cancelling its attempts so that only resumable partials stay behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import gc
import math
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bulkfetch.errors import EXIT_INTERNAL, UsageError, WorkerFailed
from bulkfetch.http import client
from bulkfetch.models import Job, Settings, Ticket
from bulkfetch.schedule import wire
from bulkfetch.show.events import NullObserver, Observer
from bulkfetch.store.threads import Writers, write_all

if TYPE_CHECKING:
    from bulkfetch.schedule.scheduler import Scheduler

MAX_WORKERS = 4  # by default; four did no better than two on two cores
STOP_WAIT_S = 10.0  # how long the parent waits for stopped workers to report their last
_PIPE_BYTES = 1 << 20
_PR_SET_PDEATHSIG = 1


def choose(requested: int | None, settings: Settings) -> int:
    """How many worker processes: as asked, or one per core (at most 4); never more than
    --concurrency; 1 (no workers) off Linux, where PDEATHSIG and a shared monotonic clock are
    not to be had, and with --split."""
    if settings.split > 1:  # a split body's extra connections borrow slots in this process
        if requested is not None and requested > 1:
            raise UsageError("--split runs in one process (its extra connections take their "
                             "slots from it): drop --workers")
        return 1
    count = requested if requested is not None else min(cores(), MAX_WORKERS)
    if sys.platform != "linux":
        return 1
    return max(1, min(count, settings.concurrency))


def cores() -> int:
    """The cores this process may use: its CPU affinity, and a container's CPU quota (cgroup v2
    `cpu.max`), which `os.cpu_count()` does not see."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def share(total: int, index: int, count: int) -> int:
    """Worker `index`'s part of a whole limit; the parts add up to the whole."""
    return total // count + (index < total % count)


class WorkerBug(Exception):
    """A worker hit a bug; its traceback is attached as a note."""


# The parent side.


@dataclass(slots=True)
class _Child:
    pid: int
    down: int  # tickets go down this pipe
    up: int  # messages come up this one
    credit: int  # free slots
    running: dict[int, Ticket] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    outbox: list[Ticket] = field(default_factory=list)
    buffer: bytearray = field(default_factory=bytearray)
    alive: bool = True


class Pool:
    """The forked workers, from before the parent's loop starts until they are reaped."""

    def __init__(self, children: list[_Child]) -> None:
        self.children = children

    def executor(
        self, scheduler: Scheduler, observer: Observer
    ) -> contextlib.AbstractAsyncContextManager[ProcessExecutor]:
        return _running(ProcessExecutor(self.children, scheduler, observer))

    def reap(self) -> None:
        for child in self.children:
            for fd in (child.down, child.up):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)


def spawn(count: int, settings: Settings, extras: client.Extras) -> Pool:
    """Fork `count` workers, each with its share of --concurrency."""
    children: list[_Child] = []
    parent = os.getpid()
    # Objects that exist now are shared with the workers until written to; a collection would
    # write to every one of them (copy-on-write), so the collector leaves them alone.
    gc.freeze()
    for index in range(count):
        limit = share(settings.concurrency, index, count)
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            for fd in (down_w, up_r, *(fd for c in children for fd in (c.down, c.up))):
                os.close(fd)
            _worker(settings, extras, down_r, up_w, limit, parent)
        os.close(down_r)
        os.close(up_w)
        children.append(_Child(pid, down_w, up_r, limit))
    return Pool(children)


class ProcessExecutor:
    """The scheduler's Executor over the workers: tickets down, rows up, on the parent's loop."""

    def __init__(self, children: list[_Child], scheduler: Scheduler, observer: Observer) -> None:
        self._children = children
        self._free = sum(c.credit for c in children)  # free slots of the living workers
        self._scheduler = scheduler
        self._observer = observer
        self._flush_scheduled = False
        self._main = asyncio.current_task()
        self.crashed: tuple[str, str] | None = None  # a worker's bug: error, traceback
        self.failure: WorkerFailed | WorkerBug | None = None
        self.gone = asyncio.Event()  # a worker has exited
        self.stopping = False  # the pipes down are closed: workers exit as they should

    def room(self) -> bool:
        return self._free > 0

    def hold(self) -> None:
        """No attempt in the parent borrows a slot (--split runs in one process)."""
        raise NotImplementedError("--split runs in one process")

    def release(self) -> None:
        raise NotImplementedError("--split runs in one process")

    def start(self, ticket: Ticket) -> None:
        child = max((c for c in self._children if c.alive), key=lambda c: c.credit)
        child.credit -= 1
        self._free -= 1
        child.running[ticket.id] = ticket
        child.outbox.append(ticket)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for child in self._children:
            if child.outbox and child.alive:
                tickets, child.outbox = child.outbox, []
                # A worker that died is noticed by its pipe up; its tickets go back then.
                with contextlib.suppress(BrokenPipeError):
                    write_all(child.down, wire.frame([wire.ticket_out(t) for t in tickets]))

    def on_readable(self, child: _Child) -> None:
        """The loop's reader callback. What it raises, the loop would only log, and the run
        would wait forever for rows that never come: a bug here ends the run instead."""
        try:
            block = os.read(child.up, _PIPE_BYTES)
        except BlockingIOError:
            return
        try:
            if not block:
                self._gone(child)
                return
            child.buffer += block
            for row in wire.unframe(child.buffer):
                self._handle(child, row)
        except Exception as exc:
            self._broke(exc)

    def _broke(self, exc: Exception) -> None:
        if self.failure is None:
            self.failure = WorkerBug(f"in the scheduler, on a worker's row: "
                                     f"{type(exc).__name__}: {exc}")
            self.failure.add_note("".join(traceback.format_exception(exc)))
        if self._main is not None:
            self._main.cancel()

    def _handle(self, child: _Child, row: wire.Row) -> None:
        kind = row[0]
        if kind == wire.CRASHED:
            self.crashed = wire.crashed_in(row)
            return
        key = wire.key_of(row)
        if (ticket := child.running.get(key)) is None:
            return
        if kind == wire.PROGRESS:
            nbytes, length, responded = wire.progress_in(row)
            if responded:
                self._observer.responded(ticket.job, length)
            if nbytes:
                self._observer.received(ticket.job, nbytes)
        elif kind == wire.ENDED:
            child.ended.add(key)
            child.credit += 1
            self._free += 1
            self._scheduler.ended(ticket)
        elif kind == wire.CUT:
            self._scheduler.cut(ticket, *wire.cut_in(row))
        elif kind == wire.SETTLED:
            child.ended.discard(key)
            del child.running[key]
            self._scheduler.settle(ticket, wire.attempt_in(row))

    def _gone(self, child: _Child) -> None:
        """The worker's pipe closed: it has exited. What it had not settled goes back."""
        asyncio.get_running_loop().remove_reader(child.up)
        child.alive = False
        self._free -= child.credit
        self.gone.set()
        lost = list(child.running.values())
        child.running.clear()
        for ticket in lost:
            if ticket.id not in child.ended:
                self._scheduler.ended(ticket)
            self._scheduler.lost(ticket)
        if lost and not self.stopping:
            self._observer.worker_lost(child.pid, len(lost))
        alive = any(c.alive for c in self._children)
        if not alive and not self.stopping and self._main is not None:
            self.failure = WorkerFailed("every worker process died (the manifest lists what "
                                        "finished)")
            self._main.cancel()


@contextlib.asynccontextmanager
async def _running(executor: ProcessExecutor) -> AsyncIterator[ProcessExecutor]:
    """Listen to the workers while the scheduler runs. On the way out, close their pipes (the
    sign to stop) and wait for each to report its last; raise what broke them."""
    loop = asyncio.get_running_loop()
    children = executor._children
    for child in children:
        os.set_blocking(child.up, False)
        loop.add_reader(child.up, executor.on_readable, child)
    try:
        yield executor
    except asyncio.CancelledError:
        if executor.failure is None:
            raise
        if (task := asyncio.current_task()) is not None:
            task.uncancel()  # the cancellation was ours: the failure replaces it
    finally:
        await _stop(executor)
    failure: Exception | None = executor.failure
    if executor.crashed is not None:
        error, trace = executor.crashed
        failure = WorkerBug(f"in a worker process: {error}")
        failure.add_note(f"The worker's traceback:\n{trace}")
    if failure is not None:
        raise failure


async def _stop(executor: ProcessExecutor) -> None:
    """Close the pipes down, and give the workers STOP_WAIT_S to finish; then SIGKILL."""
    loop = asyncio.get_running_loop()
    children = executor._children
    executor.stopping = True
    for child in children:
        with contextlib.suppress(OSError):
            os.close(child.down)
        child.down = -1
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STOP_WAIT_S):
            while any(c.alive for c in children):
                executor.gone.clear()
                await executor.gone.wait()
    for child in children:
        if child.alive:
            child.alive = False
            loop.remove_reader(child.up)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            executor._observer.notice(
                f"worker process {child.pid} did not stop within {STOP_WAIT_S:.0f} s; killed")


# The worker side.


def _worker(
    settings: Settings, extras: client.Extras, down: int, up: int, limit: int, parent: int
) -> None:
    code = 0
    try:
        os.setpgrp()  # a terminal's Ctrl-C reaches the parent alone; it stops us by the pipe
        _die_with(parent)
        for fd in (down, up):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        link = _Link(up)
        try:
            asyncio.run(_serve(settings, extras, down, link, limit))
        except BaseException as exc:
            link.send(wire.crashed(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            code = EXIT_INTERNAL
        link.flush()
    except BaseException:
        code = EXIT_INTERNAL
    finally:
        os._exit(code)  # nothing of the parent's (its lock, its open files) is unwound here


def _die_with(parent: int) -> None:
    """SIGTERM when the parent dies, however it dies; and now, if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


async def _serve(
    settings: Settings, extras: client.Extras, down: int, link: _Link, limit: int
) -> None:
    """Make the attempts the parent sends until its pipe closes; then cancel what is left."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    # One SIGTERM or more (systemd signals the whole group at once): stop, once, cleanly.
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, by the pipe
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    closed = loop.create_future()
    buffer = bytearray()
    writers = Writers()
    try:
        async with (
            client.target(settings, writers, limit=limit) as sink,
            client.fetcher(settings, extras, sink, link, limit=limit)
            as fetcher,
            asyncio.TaskGroup() as group,
        ):
            async def attempt(ticket: Ticket) -> None:
                link.begin(ticket)
                got = await fetcher.attempt(
                    ticket, ended=lambda: link.send(wire.ended(ticket.id)),
                    cut=lambda status, n: link.send(wire.cut(ticket.id, status, n)))
                link.send(wire.settled(ticket.id, got))
                link.end(ticket)

            def on_readable() -> None:
                block = os.read(down, _PIPE_BYTES)
                if not block:
                    loop.remove_reader(down)
                    if not closed.done():
                        closed.set_result(None)
                    return
                buffer.extend(block)
                for row in wire.unframe(buffer):
                    group.create_task(attempt(wire.ticket_in(row)))

            loop.add_reader(down, on_readable)
            link.start(loop)
            await closed
            raise asyncio.CancelledError  # the parent is done or gone: stop what is left
    except asyncio.CancelledError:
        pass
    finally:
        writers.close()


class _Link(NullObserver):
    """The worker's pipe up: messages batched per loop turn; also the Fetcher's Observer,
    which reports only what a worker sees (answers and body bytes)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._out: list[wire.Row] = []
        self._ids: dict[str, int] = {}  # a job's URL -> its ticket id, while it runs here
        self._bytes: dict[int, int] = {}
        self._answered: dict[int, int | None] = {}  # responded since the last flush: lengths
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._gone = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def begin(self, ticket: Ticket) -> None:
        self._ids[ticket.job.url] = ticket.id

    def end(self, ticket: Ticket) -> None:
        self._ids.pop(ticket.job.url, None)

    def send(self, row: wire.Row) -> None:
        self._out.append(row)
        self._soon()

    def _soon(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        progress = [wire.progress(i, n) for i, n in self._bytes.items()]
        self._bytes.clear()
        out, self._out = [*progress, *self._out], []
        if not out or self._gone:
            return
        try:
            write_all(self._fd, wire.frame(out))
        except BrokenPipeError:  # the parent is gone: its pipe down closes too, and we stop
            self._gone = True

    # Observer: the two events a worker sees; the parent makes the rest.

    def responded(self, job: Job, content_length: int | None) -> None:
        if (key := self._ids.get(job.url)) is not None:
            self._out.append(wire.progress(key, 0, length=content_length, responded=True))
            self._soon()

    def received(self, job: Job, nbytes: int) -> None:
        if (key := self._ids.get(job.url)) is not None:
            self._bytes[key] = self._bytes.get(key, 0) + nbytes
            self._soon()
