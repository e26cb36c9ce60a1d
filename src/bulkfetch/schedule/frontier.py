"""The frontier: tickets waiting by host, and which host may start a request now. Pure: no I/O,
no tasks, the clock passed in.

Every host with waiting tickets is in exactly one state (Heritrix's ready and snoozed queues):

    ready     may start now; a FIFO of hosts, so a free slot goes round-robin across hosts
    snoozed   a heap by wake time: paused after a 429/503, or spacing its --host-rate
    busy      at its --per-host limit; ready again when one of its requests ends
    idle      nothing waiting

A waiting host holds no slot and no task: only a place in one of these structures. A retry
waits in a timer heap until its not-before time, then goes to the front of its host's queue, so
a pause of the host holds its retries too. --rate is one virtual clock for all hosts (GCRA):
each start reserves the next free instant, so the long-run rate is exact.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from bulkfetch.models import Ticket


class _State(enum.Enum):
    IDLE = 0
    READY = 1
    SNOOZED = 2
    BUSY = 3


class _Host:
    __slots__ = ("dead", "in_flight", "key", "next_start", "paused_until", "queue", "state")

    def __init__(self, key: str) -> None:
        self.key = key
        self.queue: deque[Ticket] = deque()
        self.in_flight = 0
        self.next_start = 0.0  # --host-rate: the earliest next start
        self.paused_until = 0.0
        self.state = _State.IDLE
        self.dead = False


@dataclass(frozen=True, slots=True)
class Waiting:
    """A host with tickets that cannot start now, and why: for the display."""

    host: str
    tickets: int
    reason: str  # "paused 12s", "at --per-host", "--host-rate"


class Frontier:
    """Tickets by host; `take` hands out one that may start now, fairly across hosts."""

    def __init__(
        self, *, per_host: int = 0, rate: float | None = None, host_rate: float | None = None
    ) -> None:
        self._per_host = per_host
        self._interval = 1 / rate if rate else 0.0
        self._host_interval = 1 / host_rate if host_rate else 0.0
        self._next_start = 0.0  # --rate
        self._hosts: dict[str, _Host] = {}
        self._ready: deque[_Host] = deque()
        self._snoozed: list[tuple[float, int, _Host]] = []
        self._timers: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self.queued = 0  # tickets in host queues (not those in timers or in flight)

    def add(self, ticket: Ticket, now: float) -> None:
        """A new ticket, behind its host's others."""
        host = self._host(ticket.job.host)
        host.queue.append(ticket)
        self.queued += 1
        self._place(host, now)

    def later(self, ticket: Ticket, not_before: float) -> None:
        """A retry: back through its host at `not_before`, ahead of the host's new tickets."""
        heapq.heappush(self._timers, (not_before, next(self._seq), ticket))

    def pause(self, key: str, until: float, now: float) -> None:
        """The server asked for a break: nothing starts on `key` before `until`."""
        host = self._host(key)
        if until > host.paused_until:
            host.paused_until = until
            if host.state is _State.READY:  # leaves the ready FIFO lazily, in `take`
                host.state = _State.IDLE
                self._place(host, now)

    def ended(self, ticket: Ticket, now: float) -> None:
        """The ticket's request ended (its slot is free): its host may start another."""
        host = self._hosts[ticket.job.host]
        host.in_flight -= 1
        if host.state is _State.BUSY:
            host.state = _State.IDLE
            self._place(host, now)
        elif not host.queue and not host.in_flight and host.state is _State.IDLE:
            self._forget(host, now)

    def take(self, now: float) -> Ticket | None:
        """A ticket that may start now, its host's slot and rate reserved; None if none may."""
        self._wake(now)
        if self._interval and self._next_start > now:
            return None
        while self._ready:
            host = self._ready.popleft()
            if host.state is not _State.READY:
                continue  # paused or killed since it was queued here
            host.state = _State.IDLE
            if self._blocked(host, now):
                self._place(host, now)
                continue
            ticket = host.queue.popleft()
            self.queued -= 1
            host.in_flight += 1
            if self._host_interval:
                host.next_start = max(now, host.next_start) + self._host_interval
            if self._interval:
                self._next_start = max(now, self._next_start) + self._interval
            self._place(host, now)
            return ticket
        return None

    def wake_at(self) -> float | None:
        """The next instant something may become startable without any other event."""
        times = []
        if self._timers:
            times.append(self._timers[0][0])
        if self._snoozed:
            times.append(self._snoozed[0][0])
        if self._ready and self._interval:
            times.append(self._next_start)
        return min(times) if times else None

    def kill(self, key: str) -> list[Ticket]:
        """The host is given up on: its waiting tickets (queued and in timers) are returned, and
        those that come later are refused by `is_dead`."""
        host = self._host(key)
        host.dead = True
        host.state = _State.IDLE
        doomed = list(host.queue)
        self.queued -= len(host.queue)
        host.queue.clear()
        doomed += [entry[2] for entry in self._timers if entry[2].job.host == key]
        self._timers = [entry for entry in self._timers if entry[2].job.host != key]
        heapq.heapify(self._timers)
        return doomed

    def is_dead(self, key: str) -> bool:
        host = self._hosts.get(key)
        return host is not None and host.dead

    def waiting(self, now: float) -> Iterator[Waiting]:
        """Hosts with queued tickets that cannot start now (the display asks a few times a
        second at most)."""
        for host in self._hosts.values():
            if not host.queue or host.state is _State.READY:
                continue
            if host.paused_until > now:
                reason = f"paused {host.paused_until - now:.0f}s"
            elif host.state is _State.BUSY:
                reason = "at --per-host"
            else:
                reason = "--host-rate"
            yield Waiting(host.key, len(host.queue), reason)

    # Below: moving hosts between the states.

    def _host(self, key: str) -> _Host:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        return host

    def _forget(self, host: _Host, now: float) -> None:
        """A host with nothing left and nothing to remember costs no memory: a list of a
        million hosts keeps O(window) of them."""
        if not host.dead and host.paused_until <= now and host.next_start <= now:
            del self._hosts[host.key]

    def _blocked(self, host: _Host, now: float) -> bool:
        return bool(
            (self._per_host and host.in_flight >= self._per_host)
            or host.paused_until > now
            or (self._host_interval and host.next_start > now)
        )

    def _place(self, host: _Host, now: float) -> None:
        """Put an IDLE host where it belongs now."""
        if host.state is not _State.IDLE or not host.queue:
            return
        if self._per_host and host.in_flight >= self._per_host:
            host.state = _State.BUSY
        elif (wake := max(host.paused_until, host.next_start)) > now:
            host.state = _State.SNOOZED
            heapq.heappush(self._snoozed, (wake, next(self._seq), host))
        else:
            host.state = _State.READY
            self._ready.append(host)

    def _wake(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            ticket = heapq.heappop(self._timers)[2]
            host = self._host(ticket.job.host)
            host.queue.appendleft(ticket)
            self.queued += 1
            self._place(host, now)
        while self._snoozed and self._snoozed[0][0] <= now:
            host = heapq.heappop(self._snoozed)[2]
            if host.state is _State.SNOOZED:
                host.state = _State.IDLE
                self._place(host, now)
