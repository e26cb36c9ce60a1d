"""The run's counters, kept from observer events, and immutable snapshots of them.

Per-chunk work is two integer additions and a dict lookup; everything costly (rates, sorting,
formatting) happens when a snapshot is taken, a few times a second at most.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bulkfetch.models import Job, Result, Status
from bulkfetch.show.outgoing import mask
from bulkfetch.show.tally import Tally

RATE_WINDOW_S = 5.0
TOP_TRANSFERS = 5
RECENT_FAILURES = 5


@dataclass(frozen=True, slots=True)
class TransferView:
    name: str
    received: int
    total: int | None
    bytes_per_s: float | None  # None: all of it came in one read, which tells no speed
    attempt: int
    connections: int = 1  # --split: the connections the body comes over now


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a display shows, at one moment."""

    elapsed_s: float
    queued: int
    listing_done: bool
    estimated_total: int | None  # while listing, from the share of the lists' bytes read
    ok: int
    failed: int
    not_modified: int
    skipped: int
    retrying: int
    in_flight: int
    limit: int
    bytes: int
    files_per_s: float  # over the last RATE_WINDOW_S
    bytes_per_s: float
    avg_files_per_s: float
    avg_bytes_per_s: float
    eta_s: float | None
    transfers: tuple[TransferView, ...]
    failures: tuple[str, ...]
    waiting_on: tuple[str, ...] = ()  # while the window is full: hosts that cannot start now
    paused: tuple[str, ...] = ()  # hosts that asked for a break, with the time left
    rate_cap: int | None = None  # --limit-rate, bytes per second

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.not_modified + self.skipped


class _Transfer:
    __slots__ = ("attempt", "connections", "name", "reads", "received", "started", "total")

    def __init__(self, name: str, attempt: int, started: float) -> None:
        self.name = name
        self.attempt = attempt
        self.started = started
        self.received = 0
        self.reads = 0
        self.total: int | None = None
        self.connections = 1


class Board:
    """An Observer that only counts; `snapshot()` turns the counts into a `Snapshot`."""

    def __init__(self, *, limit: int, clock: Callable[[], float] = time.monotonic,
                 rate_cap: int | None = None) -> None:
        self._clock = clock
        self._rate_cap = rate_cap
        self._start = clock()
        self._limit = limit
        self._queued = 0
        self._queued_total: int | None = None
        self._listing_done = False
        self._read_bytes = 0
        self._total_bytes = 0
        self._tally = Tally()
        self._bytes = 0
        self._active: dict[str, _Transfer] = {}
        self._extra: dict[str, int] = {}  # a split body's connections beyond its own slot
        self._backing_off: set[str] = set()
        self._failures: deque[str] = deque(maxlen=RECENT_FAILURES)
        self._samples: deque[tuple[float, int, int]] = deque()
        self._in_flight = 0
        self._waiting_on: tuple[str, ...] = ()
        self._paused: dict[str, float] = {}  # host -> until (this clock)

    def queued(self) -> None:
        self._queued += 1

    def listing_read(self, read_bytes: int, total_bytes: int) -> None:
        self._read_bytes, self._total_bytes = read_bytes, total_bytes

    def listing_done(self) -> None:
        self._listing_done = True

    def listing_total(self, count: int) -> None:
        """The lists have been read to their end: `count` entries in all, though not all of
        them have reached the window yet. The total is exact from now on."""
        self._queued_total = count

    def started(self, job: Job, attempt: int) -> None:
        self._in_flight += 1
        self._backing_off.discard(_key(job))
        self._active[_key(job)] = _Transfer(job.path, attempt, self._clock())

    def ended(self, job: Job) -> None:
        self._in_flight -= 1

    def window_full(self, waiting: tuple[str, ...]) -> None:
        self._waiting_on = waiting

    def worker_lost(self, pid: int, requeued: int) -> None:
        pass

    def host_paused(self, host: str, seconds: float) -> None:
        self._paused[host] = max(self._paused.get(host, 0.0), self._clock() + seconds)

    def responded(self, job: Job, content_length: int | None) -> None:
        if (transfer := self._active.get(_key(job))) is not None:
            transfer.total = content_length

    def connections(self, job: Job, count: int) -> None:
        """A split body's extra connections hold slots of their own: in flight too."""
        key = _key(job)
        extra, before = max(count - 1, 0), self._extra.pop(key, 0)
        self._in_flight += extra - before
        if extra:
            self._extra[key] = extra
        if (transfer := self._active.get(key)) is not None:
            transfer.connections = max(count, 1)

    def received(self, job: Job, nbytes: int) -> None:
        self._bytes += nbytes
        if (transfer := self._active.get(_key(job))) is not None:
            transfer.received += nbytes
            transfer.reads += 1

    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None:
        self._active.pop(_key(job), None)
        self._backing_off.add(_key(job))

    def finished(self, result: Result) -> None:
        self._tally.add(result.status, result.bytes)
        self._active.pop(result.url, None)
        self._backing_off.discard(result.url)
        if result.status is Status.FAILED:
            self._failures.append(f"{result.url}: {result.error}")

    def snapshot(self) -> Snapshot:
        now = self._clock()
        elapsed = max(now - self._start, 1e-9)
        counts = self._tally.counts
        done = sum(counts.values())
        self._samples.append((now, done, self._bytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        then, done_then, bytes_then = self._samples[0]
        span = now - then
        files_rate = (done - done_then) / span if span > 0 else done / elapsed
        bytes_rate = (self._bytes - bytes_then) / span if span > 0 else self._bytes / elapsed
        listed = self._listing_done or self._queued_total is not None
        queued = max(self._queued, self._queued_total or 0)
        estimated = None if listed else self._estimated_total()
        expected = queued if listed else estimated
        remaining = expected - done if expected is not None else 0
        eta = remaining / files_rate if expected is not None and files_rate > 0 else None
        if eta is not None and bytes_rate > 0:  # big bodies in flight: their bytes, too
            eta = max(eta, self._bytes_in_flight() / bytes_rate)
        return Snapshot(
            elapsed_s=elapsed,
            queued=queued,
            listing_done=listed,
            estimated_total=estimated,
            ok=counts[Status.OK],
            failed=counts[Status.FAILED],
            not_modified=counts[Status.NOT_MODIFIED],
            skipped=counts[Status.SKIPPED],
            retrying=len(self._backing_off),
            in_flight=self._in_flight,
            limit=self._limit,
            rate_cap=self._rate_cap,
            bytes=self._bytes,
            files_per_s=files_rate,
            bytes_per_s=bytes_rate,
            avg_files_per_s=done / elapsed,
            avg_bytes_per_s=self._bytes / elapsed,
            eta_s=0.0 if listed and remaining == 0 else eta,
            transfers=self._top_transfers(now),
            failures=tuple(self._failures),
            waiting_on=self._waiting_on,
            paused=self._paused_now(now),
        )

    def _paused_now(self, now: float) -> tuple[str, ...]:
        """The hosts still paused, longest first (a few), with the time left."""
        for host in [h for h, until in self._paused.items() if until <= now]:
            del self._paused[host]
        longest = sorted(self._paused.items(), key=lambda item: -item[1])[:TOP_TRANSFERS]
        return tuple(f"{host} ({until - now:,.0f}s left)" for host, until in longest)

    def _bytes_in_flight(self) -> int:
        """What the transfers under way have still to receive, by their Content-Length."""
        return sum(t.total - t.received for t in self._active.values()
                   if t.total is not None and t.total > t.received)

    def _estimated_total(self) -> int | None:
        """While the lists are read: URLs so far, scaled by the share of their bytes read."""
        if not self._total_bytes or not self._read_bytes:
            return None
        return max(self._queued, round(self._queued * self._total_bytes / self._read_bytes))

    def _top_transfers(self, now: float) -> tuple[TransferView, ...]:
        answered = [t for t in self._active.values() if t.total is not None or t.received]
        biggest = sorted(answered, key=lambda t: t.total or t.received, reverse=True)
        biggest = biggest[:TOP_TRANSFERS]
        return tuple(
            TransferView(
                name=t.name,
                received=t.received,
                total=t.total,
                bytes_per_s=t.received / max(now - t.started, 1e-3) if t.reads > 1 else None,
                attempt=t.attempt,
                connections=t.connections,
            )
            for t in biggest
        )


def _key(job: Job) -> str:
    """What a transfer is known by: the URL as a Result names it (a password masked), so that
    `finished` finds what `started` put there."""
    return mask(job.url)
