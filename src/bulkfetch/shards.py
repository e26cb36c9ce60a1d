"""--workers N: N forked processes, each a whole run over its share of the lists.

One process moves at most ~2,300 small files/s here: aiohttp's per-request Python and the GIL
hand-offs to the writer threads are per process, so a second process nearly doubles that
(measured: 20,000 x 4 KiB in 9.4 s with one, 4.9 s with two). Each worker has its own event
loop, its own single session, and a connector limit equal to its semaphore; the limits are
shares of the user's, so the whole never exceeds --concurrency. Runs under --rate, --host-rate
or --per-host keep one process (see `choose`).

Every worker reads every line and dedupes it and checks its NAME, so these decide exactly as
one process would, and keeps the entries dealt to it (`Shard`): a path is planned once, so no
path has two writers.
Workers append whole batches of lines to the one manifest (O_APPEND; each batch one write) and
save rows in the one state database (SQLite, WAL). They send what they observe to the parent
in frames on a pipe; the parent shows progress, routes signals and sums the summaries. The
parent holds the lock on --out; the workers share its descriptor, so the lock outlives a
parent that is killed before its workers end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import math
import os
import pickle
import signal
import ssl
import stat
import struct
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from http.cookies import Morsel
from pathlib import Path

from yarl import URL

from bulkfetch import runner, state
from bulkfetch.creds import Credentials
from bulkfetch.events import Observer
from bulkfetch.intake import Source, SourceError
from bulkfetch.models import Job, Result, Settings, Summary
from bulkfetch.plan import STATE_DIR
from bulkfetch.shard import Shard
from bulkfetch.state import STATE_FILE
from bulkfetch.writers import write_all

SEND_INTERVAL_S = 0.1
MAX_WORKERS = 4  # by default; four did no better than two on two cores
_FRAME = struct.Struct("!I")
_PIPE_BYTES = 1 << 20


def choose(requested: int | None, settings: Settings, sources: Sequence[Source]) -> int:
    """How many workers: as asked, or one per core (at most 4). One where a list can be read
    only once (a pipe), and one under --rate, --host-rate or --per-host: such a limit is kept
    exactly only where every request passes one pacer, and it, not the CPU, sets the pace.
    One off Linux too: a worker reopens its lists through /proc/self/fd."""
    count = requested if requested is not None else min(cores(), MAX_WORKERS)
    if settings.rate or settings.host_rate or settings.per_host or sys.platform != "linux":
        return 1
    if not all(_rereadable(source) for source in sources):
        return 1
    return min(count, settings.concurrency)


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


def _rereadable(source: Source) -> bool:
    return stat.S_ISREG(os.fstat(source.fd).st_mode)


def run(
    settings: Settings,
    sources: Sequence[Source],
    observer: Observer,
    *,
    workers: int,
    companion: Callable[[], Coroutine[object, object, None]] | None = None,
    ssl_context: ssl.SSLContext | bool = True,
    credentials: Credentials | None = None,
    cookies: Sequence[tuple[Morsel[str], URL]] = (),
) -> Summary:
    """Fork `workers` processes, show what they report, and return their summaries' sum."""
    settings.manifest.parent.mkdir(parents=True, exist_ok=True)
    settings.manifest.write_bytes(b"")  # one run, one manifest: truncated once, here
    state.prepare(settings.out / STATE_DIR / STATE_FILE)
    children: list[_Child] = []
    # Objects that exist now are shared with the workers until written to; a collection would
    # write to every one of them (copy-on-write), so the collector leaves them alone.
    gc.freeze()
    try:
        for index in range(workers):
            shard = Shard(index, workers)
            mine = [_reopen(source) for source in sources]
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                os.close(read_end)
                for child in children:
                    os.close(child.fd)
                _worker(
                    _worker_settings(settings, shard), mine, shard, write_end,
                    ssl_context, credentials or Credentials(), cookies,
                )
            os.close(write_end)
            for source in mine:
                os.close(source.fd)
            children.append(_Child(pid, read_end))
    except BaseException:
        _stop(children, signal.SIGTERM)
        raise
    try:
        with asyncio.Runner() as loop_runner:
            watched = loop_runner.run(_watch(children, observer, companion))
    except BaseException:
        for child in children:  # a worker blocked on its pipe now fails to write, and stops
            if not child.done:
                os.close(child.fd)
        _stop(children, signal.SIGTERM)
        raise
    finally:  # by now every worker has closed its pipe, that is, it is on its way out
        statuses = [os.waitpid(child.pid, 0)[1] for child in children]
    return _total(children, statuses, *watched)


def _reopen(source: Source) -> Source:
    """A descriptor of the same file with its own offset, so each worker reads all of it."""
    offset = os.lseek(source.fd, 0, os.SEEK_CUR)
    fd = os.open(f"/proc/self/fd/{source.fd}", os.O_RDONLY | os.O_CLOEXEC)
    os.lseek(fd, offset, os.SEEK_SET)
    return dataclasses.replace(source, fd=fd)


def _worker_settings(settings: Settings, shard: Shard) -> Settings:
    return dataclasses.replace(settings, concurrency=shard.share(settings.concurrency))


# The worker side.


def _worker(
    settings: Settings,
    sources: Sequence[Source],
    shard: Shard,
    fd: int,
    ssl_context: ssl.SSLContext | bool,
    credentials: Credentials,
    cookies: Sequence[tuple[Morsel[str], URL]],
) -> None:
    code = 0
    try:
        os.setpgrp()  # signals come from the parent alone, once each
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        forward = Forwarder(fd)
        try:
            summary = runner.run(
                settings, sources, forward, companion=forward.pump, ssl_context=ssl_context,
                credentials=credentials, cookies=cookies, shard=shard,
            )
            forward.send(("summary", summary))
        except SourceError as exc:
            forward.send(("source_error", str(exc)))
        except BaseException as exc:
            forward.send(("bug", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        forward.flush()
    except BaseException:
        code = 70
    finally:
        os._exit(code)  # nothing of the parent's (its lock, its open files) is unwound here


class Forwarder:
    """An Observer that sends its calls to the parent, batched every SEND_INTERVAL_S."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._calls: list[tuple[object, ...]] = []
        self._gone = False

    def queued(self) -> None:
        self._calls.append(("queued",))

    def listing_read(self, read_bytes: int, total_bytes: int) -> None:
        self._calls.append(("listing_read", read_bytes, total_bytes))

    def listing_done(self) -> None:
        self._calls.append(("listing_done",))

    def started(self, job: Job, attempt: int) -> None:
        self._calls.append(("started", job, attempt))

    def responded(self, job: Job, content_length: int | None) -> None:
        self._calls.append(("responded", job, content_length))

    def received(self, job: Job, nbytes: int) -> None:
        self._calls.append(("received", job, nbytes))

    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None:
        self._calls.append(("retrying", job, attempt, delay_s, error))

    def finished(self, result: Result) -> None:
        self._calls.append(("finished", result))

    def send(self, message: tuple[object, ...]) -> None:
        self._calls.append(message)

    async def pump(self) -> None:
        try:
            while True:
                await asyncio.sleep(SEND_INTERVAL_S)
                self.flush()
        finally:
            self.flush()

    def flush(self) -> None:
        calls, self._calls = self._calls, []
        if not calls or self._gone:
            return
        body = pickle.dumps(calls, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            write_all(self._fd, [_FRAME.pack(len(body)), body])
        except BrokenPipeError:  # the parent is gone: stop as if told to
            self._gone = True
            os.kill(os.getpid(), signal.SIGTERM)


# The parent side.


@dataclass(slots=True)
class _Child:
    pid: int
    fd: int
    buffer: bytearray = dataclasses.field(default_factory=bytearray)
    summary: Summary | None = None
    listing: tuple[int, int] = (0, 0)
    listed: bool = False
    done: bool = False


async def _watch(
    children: list[_Child],
    observer: Observer,
    companion: Callable[[], Coroutine[object, object, None]] | None,
) -> tuple[list[tuple[object, ...]], list[int], float]:
    loop = asyncio.get_running_loop()
    began = time.monotonic()
    received: list[int] = []
    errors: list[tuple[object, ...]] = []
    all_done = loop.create_future()

    def on_signal(signum: int) -> None:
        received.append(signum)
        _stop(children, signum)  # a second one makes the workers quit without cleaning up

    def on_readable(child: _Child) -> None:
        try:
            block = os.read(child.fd, _PIPE_BYTES)
        except BlockingIOError:
            return
        if block:
            child.buffer += block
            for message in _frames(child):
                _replay(message, child, children, observer, errors)
            return
        loop.remove_reader(child.fd)
        os.close(child.fd)
        child.done = True
        if all(c.done for c in children) and not all_done.done():
            all_done.set_result(None)

    for child in children:
        os.set_blocking(child.fd, False)
        loop.add_reader(child.fd, on_readable, child)
    with runner.handling_signals(on_signal):
        async with runner.beside(companion):
            await all_done
    return errors, received, time.monotonic() - began


def _frames(child: _Child) -> list[tuple[object, ...]]:
    messages: list[tuple[object, ...]] = []
    buffer = child.buffer
    start = 0
    while len(buffer) - start >= _FRAME.size:
        (size,) = _FRAME.unpack_from(buffer, start)
        if len(buffer) - start - _FRAME.size < size:
            break
        body = buffer[start + _FRAME.size : start + _FRAME.size + size]
        messages += pickle.loads(body)
        start += _FRAME.size + size
    del buffer[:start]
    return messages


def _replay(
    message: tuple[object, ...],
    child: _Child,
    children: list[_Child],
    observer: Observer,
    errors: list[tuple[object, ...]],
) -> None:
    kind, *args = message
    if kind == "listing_read":
        child.listing = (args[0], args[1])  # type: ignore[assignment]
        observer.listing_read(
            sum(c.listing[0] for c in children), sum(c.listing[1] for c in children)
        )
    elif kind == "listing_done":
        child.listed = True
        if all(c.listed for c in children):
            observer.listing_done()
    elif kind == "summary":
        child.summary = args[0]  # type: ignore[assignment]
    elif kind in ("source_error", "bug"):
        errors.append(message)
    else:
        getattr(observer, str(kind))(*args)


def _stop(children: list[_Child], signum: int) -> None:
    for child in children:
        if not child.done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)


class WorkerLost(Exception):
    """A worker process was killed from outside (the OOM killer, `kill -9`): not a bug, but its
    unfinished URLs are missing from the manifest."""


class WorkerFailed(Exception):
    """A worker process died or hit a bug; its traceback has been printed."""


def _total(
    children: list[_Child],
    statuses: list[int],
    errors: list[tuple[object, ...]],
    received: list[int],
    elapsed_s: float,
) -> Summary:
    for kind, *args in errors:
        if kind == "bug":
            failure = WorkerFailed(f"in a worker process: {args[0]}")
            failure.add_note(f"The worker's traceback:\n{args[1]}")
            raise failure
    for _, *args in errors:
        raise SourceError(str(args[0]))
    summaries = [c.summary for c in children]
    for child, status in zip(children, statuses, strict=True):
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            raise WorkerLost(
                f"worker process {child.pid} was killed by {name}; what it had not finished is "
                "not in the manifest (run again to complete)"
            )
    if any(s is None for s in summaries) or any(statuses):
        raise WorkerFailed(f"a worker ended without a summary (wait statuses {statuses})")
    done = [s for s in summaries if s is not None]
    interrupted = received[0] if received else next(
        (s.interrupted_by for s in done if s.interrupted_by is not None), None
    )
    return Summary(
        ok=sum(s.ok for s in done),
        failed=sum(s.failed for s in done),
        not_modified=sum(s.not_modified for s in done),
        skipped=sum(s.skipped for s in done),
        bytes=sum(s.bytes for s in done),
        elapsed_s=elapsed_s,
        interrupted_by=interrupted,
    )
