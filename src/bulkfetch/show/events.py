"""What a run reports as it goes. The fetch code calls an observer and never knows what it does.

Every method is called on the event loop thread and must return at once; `received` is called
for every chunk, so it must cost no more than a few counter updates.
"""

from __future__ import annotations

from typing import Protocol

from bulkfetch.models import Job, Result


class Observer(Protocol):
    def queued(self) -> None:
        """One more distinct URL was read from the lists."""

    def listing_read(self, read_bytes: int, total_bytes: int) -> None:
        """How far through the lists' bytes the intake is (for an estimate of the total)."""

    def listing_done(self) -> None:
        """Every entry of the lists has been taken in."""

    def listing_total(self, count: int) -> None:
        """The lists have been read to their end: `count` entries, some not yet taken in."""

    def started(self, job: Job, attempt: int) -> None:
        """An attempt holds a slot and is about to send its request."""

    def ended(self, job: Job) -> None:
        """The attempt's request no longer holds its slot (its file may still be written)."""

    def responded(self, job: Job, content_length: int | None) -> None:
        """A 2xx answer arrived; its body follows."""

    def received(self, job: Job, nbytes: int) -> None:
        """A chunk of body was written."""

    def connections(self, job: Job, count: int) -> None:
        """A body split over several connections (--split) now comes over `count` of them."""

    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None:
        """An attempt failed and another follows after `delay_s`."""

    def finished(self, result: Result) -> None:
        """The verdict for one URL."""

    def window_full(self, waiting: tuple[str, ...]) -> None:
        """The read-ahead window is full of entries of hosts that cannot start now (a few of
        them, described); an empty tuple when the intake moves again."""

    def notice(self, message: str) -> None:
        """Something about the lists the user should know (a repeated URL that asks for
        another NAME); one line, already worded."""

    def worker_lost(self, pid: int, requeued: int) -> None:
        """A worker process died; its `requeued` attempts go to the others."""

    def host_paused(self, host: str, seconds: float) -> None:
        """The host asked for a break (429/503 with Retry-After): nothing starts on it for
        `seconds`."""


class NullObserver:
    """Every event ignored: the base of observers that care about a few (the library's
    `on_result`, a worker's pipe up)."""

    def queued(self) -> None: ...
    def listing_read(self, read_bytes: int, total_bytes: int) -> None: ...
    def listing_done(self) -> None: ...
    def listing_total(self, count: int) -> None: ...
    def started(self, job: Job, attempt: int) -> None: ...
    def ended(self, job: Job) -> None: ...
    def responded(self, job: Job, content_length: int | None) -> None: ...
    def received(self, job: Job, nbytes: int) -> None: ...
    def connections(self, job: Job, count: int) -> None: ...
    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None: ...
    def finished(self, result: Result) -> None: ...
    def window_full(self, waiting: tuple[str, ...]) -> None: ...
    def notice(self, message: str) -> None: ...
    def worker_lost(self, pid: int, requeued: int) -> None: ...
    def host_paused(self, host: str, seconds: float) -> None: ...
