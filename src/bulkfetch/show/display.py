"""What people see while a run goes and when it ends.

Three modes, chosen by the CLI:
- live: a table on a terminal (`bulkfetch.show.live`, the one module that uses rich);
- plain: for cron and container logs, no escape sequences and no carriage returns: one status
  line every `status_interval_s`, and the summary as plain lines;
- quiet: failures (the first few) and a short summary only.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bulkfetch.models import Job, Result, Status, Summary
from bulkfetch.show.board import Board, Snapshot
from bulkfetch.show.outgoing import line as shown

if TYPE_CHECKING:
    from bulkfetch.show.live import LiveView

REFRESH_S = 0.25
FAILURE_LINES = 50


class Mode(enum.Enum):
    LIVE = "live"
    PLAIN = "plain"
    QUIET = "quiet"


@dataclass(frozen=True, slots=True)
class DisplaySettings:
    mode: Mode
    verbose: bool = False
    status_interval_s: float = 30.0


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def total(snap: Snapshot) -> str:
    if snap.listing_done:
        return f"{snap.queued:,}"
    if snap.estimated_total is not None:
        return f"≥ {snap.queued:,} (≈ {snap.estimated_total:,})"
    return f"≥ {snap.queued:,}"


def status_line(snap: Snapshot) -> str:
    """One plain line for logs: no escapes, no carriage returns."""
    return _status(snap) + waiting_note(snap)


def waiting_note(snap: Snapshot) -> str:
    note = "; paused: " + ", ".join(snap.paused) if snap.paused else ""
    if snap.waiting_on:
        note += "; window full, waiting on " + ", ".join(snap.waiting_on)
    return note


def _status(snap: Snapshot) -> str:
    return (
        f"{snap.done:,}/{total(snap)} done: {snap.ok:,} ok, {snap.failed:,} failed, "
        f"{snap.not_modified:,} not modified, {snap.skipped:,} skipped, "
        f"{snap.retrying:,} retrying; "
        f"{human_bytes(snap.bytes)}; {snap.files_per_s:,.0f} files/s, "
        f"{human_bytes(snap.bytes_per_s)}/s{capped(snap)}; "
        f"in flight {snap.in_flight}/{snap.limit}; "
        f"elapsed {human_duration(snap.elapsed_s)}, ETA {human_duration(snap.eta_s)}"
    )


def capped(snap: Snapshot) -> str:
    """` (cap 6.3 MB/s)` under --limit-rate."""
    return f" (cap {human_bytes(snap.rate_cap)}/s)" if snap.rate_cap else ""


def urls(count: int) -> str:
    """`1 URL`, `2 URLs`."""
    return f"{count:,} URL" if count == 1 else f"{count:,} URLs"


def summary_lines(summary: Summary, manifest: Path | str) -> list[str]:
    seconds = max(summary.elapsed_s, 1e-9)
    lines = []
    if summary.interrupted_by is not None:
        name = signal.Signals(summary.interrupted_by).name
        lines.append(f"interrupted by {name}: {urls(summary.interrupted)} cut off, "
                     f"{human_bytes(summary.kept_for_resume)} kept for resume; the manifest "
                     "lists what finished")
    received = ""
    if summary.received != summary.bytes:  # resumed files, or bodies received and lost
        received = f", {human_bytes(summary.received)} received"
    lines.append(
        f"{summary.ok:,} ok, {summary.failed:,} failed, {summary.not_modified:,} not modified, "
        f"{summary.skipped:,} skipped; {human_bytes(summary.bytes)} saved{received} in "
        f"{human_duration(summary.elapsed_s)} ({summary.total / seconds:,.0f} files/s, "
        f"{human_bytes(summary.received / seconds)}/s)"
    )
    lines.append(f"manifest: {manifest}")
    return lines


class Display:
    """The run's Observer for people: counts on a Board, prints lines, drives the live view."""

    def __init__(
        self,
        settings: DisplaySettings,
        *,
        limit: int,
        stream: TextIO,
        rate_cap: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(
            datetime.UTC),
    ) -> None:
        self.settings = settings
        self._wall_clock = wall_clock
        self.board = Board(limit=limit, clock=clock, rate_cap=rate_cap)
        self._stream = stream
        self._live: LiveView | None = None
        if settings.mode is Mode.LIVE:
            from bulkfetch.show.live import LiveView  # rich: 30 ms to import (bench/NOTES.md)

            self._live = LiveView(stream)
        self._failures = 0

    # Observer: forwarded to the board, plus the lines some modes print.

    def queued(self) -> None:
        self.board.queued()

    def listing_read(self, read_bytes: int, total_bytes: int) -> None:
        self.board.listing_read(read_bytes, total_bytes)

    def listing_done(self) -> None:
        self.board.listing_done()

    def listing_total(self, count: int) -> None:
        self.board.listing_total(count)

    def started(self, job: Job, attempt: int) -> None:
        self.board.started(job, attempt)

    def ended(self, job: Job) -> None:
        self.board.ended(job)

    def window_full(self, waiting: tuple[str, ...]) -> None:
        self.board.window_full(waiting)

    def host_paused(self, host: str, seconds: float) -> None:
        self.board.host_paused(host, seconds)

    def notice(self, message: str) -> None:
        if self.settings.mode is not Mode.QUIET:
            self.say(message)

    def worker_lost(self, pid: int, requeued: int) -> None:
        self.say(f"worker process {pid} died; {urls(requeued)} it had in flight go to the "
                 "others")

    def responded(self, job: Job, content_length: int | None) -> None:
        self.board.responded(job, content_length)

    def received(self, job: Job, nbytes: int) -> None:
        self.board.received(job, nbytes)

    def connections(self, job: Job, count: int) -> None:
        self.board.connections(job, count)

    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None:
        self.board.retrying(job, attempt, delay_s, error)

    def finished(self, result: Result) -> None:
        self.board.finished(result)
        if self.settings.verbose:
            self.say(_result_line(result))
        elif result.status is Status.FAILED:
            self._failures += 1
            if self._failures <= FAILURE_LINES:
                self.say(f"failed: {result.url}: {result.error}")
            elif self._failures == FAILURE_LINES + 1:
                self.say("further failures are listed only in the manifest")

    def say(self, line: str) -> None:
        """One line on stderr; above the table when it is live. Lines hold URLs, names and
        servers' words: they pass the one exit (`outgoing.line`) here, where they leave."""
        line = shown(line)
        if self._live is not None:
            self._live.say(f"bulkfetch: {line}")
        else:  # a log (cron, a container): each line says when, so appended runs part
            when = self._wall_clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            print(f"{when} bulkfetch: {line}", file=self._stream, flush=True)

    async def run(self) -> None:
        """Refresh the view until cancelled; the caller cancels it when the run ends."""
        if self._live is not None:
            await self._live.run(self.board)
        elif self.settings.mode is Mode.PLAIN and self.settings.status_interval_s > 0:
            while True:
                await asyncio.sleep(self.settings.status_interval_s)
                self.say(status_line(self.board.snapshot()))

    def show_summary(self, summary: Summary, manifest: Path | str) -> None:
        if self._live is not None:
            self._live.show_summary(summary, manifest)
        else:
            for line in summary_lines(summary, manifest):
                self.say(line)


def _result_line(result: Result) -> str:
    http = result.http_status if result.http_status is not None else "-"
    where = result.path if result.error is None else result.error
    status = result.status.replace("_", " ")  # one state, one name: "not modified"
    return f"{status}: {result.url} [{http}] {result.bytes:,} B -> {where}"
