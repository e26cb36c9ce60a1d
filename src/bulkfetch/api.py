"""A run as a library call, and the steps the CLI shares with it.

    import bulkfetch
    summary = bulkfetch.fetch(["urls.txt"], "out/", concurrency=50)
    summary = bulkfetch.fetch(["https://example.com/a.pdf"], "out/", shard=(3, 16))

`fetch` holds every guarantee of the CLI (the lock on --out, atomic files, the manifest and the
state, a shard's done marker) and prints nothing. It runs in one process (`workers=1`) by
default: it is meant to be called from engines' tasks (a Ray task, a Dask future), which bring
their own processes; it may run on any thread of such a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
import stat
import sys
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypedDict, Unpack

from bulkfetch import settings as settings_
from bulkfetch.errors import Interrupted, LockedOut, Terminated, UsageError
from bulkfetch.http import client, creds, tls
from bulkfetch.http.pace import BytePace
from bulkfetch.lists.intake import Listed, Source
from bulkfetch.models import (
    Job,
    Refetch,
    Result,
    Settings,
    Shard,
    ShardBy,
    Summary,
    Timeouts,
    Tls,
)
from bulkfetch.schedule import runner
from bulkfetch.schedule import workers as workers_
from bulkfetch.schedule.runner import StopToken
from bulkfetch.schedule.scheduler import Room
from bulkfetch.show import outgoing
from bulkfetch.show.events import NullObserver, Observer
from bulkfetch.show.relay import LoopRelay, Relay
from bulkfetch.store import lock
from bulkfetch.store.folder import check_home
from bulkfetch.store.jsonfile import write_json
from bulkfetch.store.layout import Layout

Item = str | tuple[str, str]  # a URL, or a (URL, NAME) pair
SourceSpec = str | os.PathLike[str] | Iterable[Item] | AsyncIterable[Item]
Sources = list[SourceSpec] | tuple[SourceSpec, ...]


class Options(TypedDict, total=False):
    """The CLI's options by name (`--per-host` is `per_host`), for `fetch` and `fetch_async`;
    checked by the same factory as the CLI's (settings.py)."""

    manifest: str | os.PathLike[str]
    state: str | os.PathLike[str]  # with a bucket `out`: the run's own files stay here
    concurrency: int
    retries: int
    backoff_s: float
    timeout: float
    connect_timeout: float | None
    read_timeout: float | None
    timeouts: Timeouts  # the three at once
    per_host: int
    rate: float | None
    host_rate: float | None
    limit_rate: int | str | None  # bytes per second, or "500k", "32M"
    split: int  # connections for one big body
    min_split_size: int | str  # bytes, or "20M"
    max_redirects: int
    max_bytes: int | str | None  # bytes, or "500k", "10M", "2G"
    user_agent: str | None
    cacert: str | os.PathLike[str] | None
    insecure: bool
    cert: str | os.PathLike[str] | None
    key: str | os.PathLike[str] | None
    tls: Tls  # the four at once
    user: tuple[str, str] | str | None  # (USER, PASSWORD) or "USER:PASSWORD"
    netrc: bool
    proxy: str | None
    dns_servers: str | Sequence[str]  # "IP[:PORT]", comma-separated, or a sequence
    cookies: str | os.PathLike[str] | None
    headers: Sequence[tuple[str, str] | str] | Mapping[str, str]
    content_disposition: bool
    remote_time: bool
    skip_existing: bool
    force: bool
    refetch: Refetch | str  # the two at once
    host_errors: int
    max_retry_after: float  # seconds
    window: int | None


def fetch(
    sources: list[SourceSpec] | tuple[SourceSpec, ...],
    out: str | os.PathLike[str],
    *,
    shard: tuple[int, int] | Shard | None = None,
    shard_by: ShardBy = ShardBy.HOST,
    workers: int = 1,
    on_result: Callable[[Result], None] | None = None,
    stop: StopToken | None = None,
    handle_signals: bool = False,
    **options: Unpack[Options],
) -> Summary:
    """Fetch every URL of `sources` into `out`; returns the run's Summary.

    sources: a list of sources, each a list file's path ("-": standard input) or an iterable
        (or async iterable) of URLs or (URL, NAME) pairs, read as it yields.
    out: the folder (or an s3:// bucket URL) the files go to.
    shard, shard_by: this run's part of the lists, (INDEX, COUNT) and by what.
    workers: processes making the requests (1: all in this one).
    on_result: called with each URL's Result as it is decided, in order, on a thread of its
        own (never the event loop); if it raises, the run stops cleanly and `fetch` raises
        that exception itself.
    stop: a `threading.Event` (anything with `is_set()`): once set, the run stops as on
        SIGTERM and `fetch` returns the Summary, `stopped` True.
    handle_signals: False (the default) leaves the process's signal handlers alone: SIGINT
        still stops the run cleanly (asyncio's own handling) and then raises `Interrupted`.
        True: SIGINT, SIGTERM and SIGHUP stop it cleanly, the handlers there before are put
        back at the first one, and `Interrupted` (a KeyboardInterrupt) or `Terminated` (a
        SystemExit) is raised with the Summary as `.summary`. Never `os._exit`. Off the main
        thread there are no signals to handle: it has no effect there.

    Options, the CLI's by their names (`--per-host` is per_host): concurrency, retries,
    backoff_s, timeout, connect_timeout, read_timeout, timeouts, per_host, rate, host_rate,
    limit_rate, split, min_split_size,
    max_redirects, max_bytes, user_agent, cacert, insecure, cert, key, tls, user, netrc,
    proxy, dns_servers, cookies, headers (a mapping or pairs), content_disposition, remote_time,
    skip_existing, force, refetch, host_errors, max_retry_after, window, manifest, state.

    Raises UsageError (a bad option or source, in one line), LockedOut (another run holds
    `out`), SourceError (a list that cannot be read), RecordFailed (the manifest or the state
    could not be written), Interrupted / Terminated (a signal), or what `on_result` raised.
    Retries and notices go to the `bulkfetch` logger. From a running event loop, use
    `fetch_async`; for the Results as an iterator, `stream`.
    """
    if _loop_running():
        raise UsageError("bulkfetch.fetch() cannot run inside a running event loop: "
                         "use `await bulkfetch.fetch_async(...)` there")
    settings = settings_for(sources, out, shard=shard, shard_by=shard_by, options=options)
    processes = workers_.choose(settings_.workers(workers) or 1, settings)
    extras = prepare(settings, sources)
    relay = Relay() if on_result is not None else None
    reader = relay.serve(on_result) if relay is not None and on_result is not None else None
    try:
        summary = execute(
            settings, sources, Library(relay), extras=extras, processes=processes,
            signals=runner.Signals.STOP if handle_signals else runner.Signals.LEAVE,
            stops=stop_tokens(stop, relay), room=relay)
    finally:
        if relay is not None and reader is not None:
            relay.end()
            reader.join()
    raise_for(summary, relay)
    return summary


def raise_for(summary: Summary, relay: Relay | None = None) -> None:
    """What a library call raises after a run that ended early: the reader's own exception,
    or Interrupted / Terminated after a signal."""
    if relay is not None and relay.error is not None:
        relay.error.add_note(f"bulkfetch: the run stopped cleanly; its manifest: "
                             f"{summary.manifest}")
        raise relay.error
    if summary.interrupted_by == signal.SIGINT:
        raise Interrupted(summary)
    if summary.interrupted_by is not None:
        raise Terminated(summary)


def stop_tokens(*tokens: StopToken | None) -> tuple[StopToken, ...]:
    return tuple(token for token in tokens if token is not None)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def fetch_async(
    sources: list[SourceSpec] | tuple[SourceSpec, ...],
    out: str | os.PathLike[str],
    *,
    shard: tuple[int, int] | Shard | None = None,
    shard_by: ShardBy = ShardBy.HOST,
    on_result: Callable[[Result], None] | None = None,
    stop: StopToken | None = None,
    **options: Unpack[Options],
) -> Summary:
    """`fetch` on the running event loop (one session on it, in this process): for code that
    already runs asyncio. Cancelling it stops the run cleanly and raises CancelledError.
    `on_result` runs on a thread of its own, never on the loop; the caller's signals stay
    the caller's. The options and the errors are `fetch`'s."""
    settings = settings_for(sources, out, shard=shard, shard_by=shard_by, options=options)
    relay = Relay() if on_result is not None else None
    reader = relay.serve(on_result) if relay is not None and on_result is not None else None
    try:
        summary = await run_async(settings, sources, Library(relay),
                                  stops=stop_tokens(stop, relay), room=relay)
    finally:
        if relay is not None and reader is not None:
            relay.end()
            await asyncio.to_thread(reader.join)
    raise_for(summary, relay)
    return summary


async def run_async(
    settings: Settings,
    sources: Sequence[SourceSpec],
    observer: Observer,
    *,
    stops: Sequence[StopToken] = (),
    room: Room | None = None,
) -> Summary:
    """A run on the running loop: prepared, locked and finished as `execute` does."""
    # Reads certificate files, makes folders.
    extras = await asyncio.to_thread(prepare, settings, sources)
    layout = Layout.of(settings.out, settings.shard)
    with contextlib.ExitStack() as stack:
        # On a thread: with a bucket, these fetch and put the state over a loop of their own.
        opened = await asyncio.to_thread(_open_all, sources, settings, stack, layout)
        try:
            summary = await runner.run_async(settings, opened, observer, extras=extras,
                                             stops=stops, room=room)
        except BaseException:
            await asyncio.to_thread(_put_back, settings, layout, quietly=True)
            raise
        await asyncio.to_thread(_finish, settings, layout, summary)
    return summary


def settings_for(
    sources: Sequence[SourceSpec], out: str | os.PathLike[str], *,
    shard: tuple[int, int] | Shard | None, shard_by: ShardBy, options: Options,
) -> Settings:
    """Settings from the library's keyword arguments, through the one factory the CLI uses;
    a wrong one is a UsageError."""
    if isinstance(sources, str | bytes | os.PathLike):
        raise UsageError(f"sources={sources!r}: expected a list of sources, such as "
                         f"[{sources!r}]")
    names = tuple(str(s) if isinstance(s, str | os.PathLike) else f"<list {n}>"
                  for n, s in enumerate(sources))
    return settings_.build(names, out, {**options, "shard": shard, "shard_by": shard_by})


def prepare(settings: Settings, sources: Sequence[SourceSpec]) -> client.Extras:
    """Everything checked and read before any request: the lists, TLS files, proxies, netrc,
    cookies, --out and the manifest. Raises a UsageError (or SettingsError) in one line;
    then nothing has been made (no folder, no manifest)."""
    for spec in sources:
        if isinstance(spec, str | os.PathLike):
            _check_source(os.fspath(spec))
    ssl_context = tls.context(settings.tls)
    credentials = creds.Credentials(
        proxies=creds.Proxies.from_env(settings.proxy),
        user=settings.user,
        logins=creds.netrc_logins() if settings.netrc else {},
    )
    jar = creds.load_cookies(settings.cookies) if settings.cookies else []
    if settings.bucket is not None:
        from bulkfetch.store import s3

        s3.check(settings.bucket)
    try:
        settings.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {str(settings.out)!r}: cannot create the folder: "
                         f"{exc.strerror}") from exc
    try:
        check_home(settings.out, Layout.of(settings.out, settings.shard).home)
    except OSError as exc:
        raise UsageError(f"--out {str(settings.out)!r}: {exc.strerror or exc}") from exc
    try:
        settings.manifest.parent.mkdir(parents=True, exist_ok=True)
        # Not truncated here (the run does it, when it starts); never through a link.
        os.close(os.open(settings.manifest, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                         | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666))
    except OSError as exc:
        raise UsageError(f"--manifest {str(settings.manifest)!r}: cannot write: "
                         f"{exc.strerror or exc}") from exc
    pace = BytePace(settings.limit_rate) if settings.limit_rate else None
    return client.Extras(ssl_context=ssl_context, credentials=credentials, cookies=jar,
                         pace=pace)


def execute(
    settings: Settings,
    sources: list[SourceSpec] | tuple[SourceSpec, ...],
    observer: Observer,
    *,
    extras: client.Extras,
    processes: int = 1,
    companion: runner.Companion | None = None,
    signals: runner.Signals = runner.Signals.LEAVE,
    stops: Sequence[StopToken] = (),
    room: Room | None = None,
) -> Summary:
    """Open the sources, take the lock on --out (on this shard), run, and mark a shard done."""
    layout = Layout.of(settings.out, settings.shard)
    with contextlib.ExitStack() as stack:
        opened = _open_all(sources, settings, stack, layout)
        try:
            summary = runner.run(settings, opened, observer, companion=companion,
                                 extras=extras, processes=processes, signals=signals,
                                 stops=stops, room=room)
        except BaseException:
            _put_back(settings, layout, quietly=True)
            raise
        _finish(settings, layout, summary)
    return summary


def _open_all(
    sources: Sequence[SourceSpec], settings: Settings, stack: contextlib.ExitStack,
    layout: Layout,
) -> list[Source | Listed]:
    """The sources opened and the lock taken (both released by `stack`); a shard started
    again is not done until it is."""
    opened = [_open(spec, name, stack) for spec, name in zip(
        sources, settings.sources, strict=True)]
    try:
        stack.enter_context(lock.hold(layout.lock))
    except lock.Locked as exc:
        raise LockedOut(str(exc)) from exc
    except OSError as exc:  # a link planted at the lock's name, a folder that is read-only
        raise UsageError(f"{str(layout.lock)!r}: cannot take the lock: "
                         f"{exc.strerror or exc}") from exc
    layout.done.unlink(missing_ok=True)
    if settings.bucket is not None and settings.state_in_bucket:
        from bulkfetch.store import s3

        s3.pull_state(settings.bucket, settings.out, layout)
    return opened


def _finish(settings: Settings, layout: Layout, summary: Summary) -> None:
    """A shard's done marker; with the state in the bucket, the state, the manifest and the
    marker put there, even after a signal."""
    if settings.shard is not None and not summary.ended_early:
        mark_done(layout.done, settings.shard, summary)
    _put_back(settings, layout)


def _put_back(settings: Settings, layout: Layout, *, quietly: bool = False) -> None:
    """With the state in the bucket: the state, the manifest and a shard's marker go back
    there, whatever ended the run (a list that broke off, a worker's bug): what finished is
    in the state. `quietly`: another error is on its way, and it is the one to report."""
    if settings.bucket is None or not settings.state_in_bucket:
        return
    from bulkfetch.store import s3

    try:
        s3.push_state(settings.bucket, settings.out, layout, settings.manifest)
    except s3.StoreError:
        if not quietly:
            raise


def mark_done(path: Path, shard: Shard, summary: Summary) -> None:
    """The shard's marker: its summary, written whole (temp file, rename) or not at all."""
    data = {"shard": shard.name, "index": shard.index, "count": shard.count,
            "by": shard.by, "finished_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "summary": summary}
    write_json(path, data)


def is_url(spec: str) -> bool:
    """A SOURCE that is an http(s) URL, and no file of that name: fetched itself."""
    return spec[:8].lower().startswith(("http://", "https://")) and not os.path.lexists(spec)


def _open(spec: SourceSpec, name: str, stack: contextlib.ExitStack) -> Source | Listed:
    if not isinstance(spec, str | os.PathLike):
        return Listed(name=name, items=spec)
    if isinstance(spec, str) and is_url(spec):
        return Listed(name="argument", items=(spec,))
    if name == "-":
        return Source(name="-", fd=sys.stdin.fileno())
    fd = _open_list(name)
    stack.callback(os.close, fd)
    return Source(name=name, fd=fd)


def _check_source(name: str) -> None:
    if name != "-" and not is_url(name):
        os.close(_open_list(name))


def _open_list(name: str) -> int:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"{name!r}: cannot read: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{name!r}: cannot read: Is a directory")
    return fd


log = logging.getLogger("bulkfetch")


class Library(NullObserver):
    """The observer of a library call: nothing printed; notices to the `bulkfetch` logger
    (WARNING), each attempt and verdict at DEBUG; each Result to the relay, if any."""

    def __init__(self, relay: Relay | LoopRelay | None = None) -> None:
        self._relay = relay

    def started(self, job: Job, attempt: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("attempt %d: %s", attempt, outgoing.line(job.url))

    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("attempt %d failed (%s), again in %.1f s: %s", attempt,
                      outgoing.line(error), delay_s, outgoing.line(job.url))

    def finished(self, result: Result) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s%s", result.status, outgoing.line(result.url),
                      f" ({outgoing.line(result.error)})" if result.error else "")
        if self._relay is not None:
            self._relay.put(result)

    def notice(self, message: str) -> None:
        log.warning("%s", outgoing.line(message))

    def host_paused(self, host: str, seconds: float) -> None:
        log.info("%s asked for a break: nothing starts on it for %.0f s",
                 outgoing.line(host), seconds)

    def worker_lost(self, pid: int, requeued: int) -> None:
        log.warning("worker process %d died; its %d attempts go to the others", pid, requeued)
