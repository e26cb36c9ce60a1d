"""The frontier, pure: which ticket may start when, on a clock the test moves."""

from __future__ import annotations

import itertools

import pytest

from bulkfetch.models import Job, SafeRelPath, Ticket
from bulkfetch.schedule.frontier import Frontier

_ids = itertools.count()


def ticket(host: str) -> Ticket:
    n = next(_ids)
    job = Job(where=f"u:{n}", url=f"http://{host}/{n}", path=SafeRelPath(f"{n}"), host=host)
    return Ticket(n, job)


def hosts_taken(frontier: Frontier, now: float, count: int) -> list[str | None]:
    taken = [frontier.take(now) for _ in range(count)]
    return [t.job.host if t else None for t in taken]


def test_a_host_sorted_list_is_served_round_robin_under_per_host() -> None:
    frontier = Frontier(per_host=2)
    for host in ("a", "b", "c"):
        for _ in range(5):
            frontier.add(ticket(host), 0.0)
    assert hosts_taken(frontier, 0.0, 7) == ["a", "b", "c", "a", "b", "c", None]


def test_ending_a_request_frees_its_host() -> None:
    frontier = Frontier(per_host=1)
    first = ticket("a")
    frontier.add(first, 0.0)
    frontier.add(ticket("a"), 0.0)
    assert frontier.take(0.0) is first
    assert frontier.take(0.0) is None  # at --per-host: holds no slot, returns nothing
    frontier.ended(first, 0.0)
    assert hosts_taken(frontier, 0.0, 1) == ["a"]


def test_a_pause_holds_its_host_and_its_retries_only() -> None:
    frontier = Frontier()
    for host in ("a", "a", "b"):
        frontier.add(ticket(host), 0.0)
    retry = ticket("a")
    frontier.later(retry, 1.0)
    frontier.pause("a", 3.0, 0.0)
    assert hosts_taken(frontier, 0.0, 2) == ["b", None]
    assert frontier.wake_at() == 1.0  # the retry's not-before; its host is still paused
    assert frontier.take(2.0) is None
    assert frontier.wake_at() == 3.0
    assert frontier.take(3.0) is retry  # a retry goes ahead of its host's new tickets
    assert hosts_taken(frontier, 3.0, 3) == ["a", "a", None]


def test_rates_space_the_starts() -> None:
    frontier = Frontier(rate=10, host_rate=2)
    for host in ("a", "b", "a", "b"):
        frontier.add(ticket(host), 0.0)
    starts = []
    now = 0.0
    while len(starts) < 4:
        if frontier.take(now) is not None:
            starts.append(now)
        else:
            wake = frontier.wake_at()
            assert wake is not None and wake > now
            now = wake
    assert starts == pytest.approx([0.0, 0.1, 0.5, 0.6])


def test_kill_returns_every_waiting_ticket_of_the_host() -> None:
    frontier = Frontier()
    for host in ("a", "b", "a"):
        frontier.add(ticket(host), 0.0)
    frontier.later(ticket("a"), 5.0)
    doomed = frontier.kill("a")
    assert [t.job.host for t in doomed] == ["a", "a", "a"]
    assert frontier.is_dead("a") and not frontier.is_dead("b")
    assert hosts_taken(frontier, 9.0, 2) == ["b", None]
    assert frontier.queued == 0


def test_waiting_names_blocked_hosts() -> None:
    frontier = Frontier(per_host=1)
    for host in ("a", "a", "b", "b"):
        frontier.add(ticket(host), 0.0)
    frontier.pause("b", 30.0, 0.0)
    frontier.take(0.0)
    reasons = {w.host: (w.tickets, w.reason) for w in frontier.waiting(0.0)}
    assert reasons == {"a": (1, "at --per-host"), "b": (2, "paused 30s")}
