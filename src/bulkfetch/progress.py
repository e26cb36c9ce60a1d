"""What people see while a run goes and when it ends: rich lives here and nowhere else.

Three modes, chosen by the CLI:
- live: a `rich.Live` table on a terminal, refreshed from an asyncio task (never from rich's own
  thread, so it only ever reads an immutable `Snapshot`), replaced by a summary table at the end;
- plain: for cron and container logs, no escape sequences and no carriage returns: one status
  line every `status_interval_s`, and the summary as plain lines;
- quiet: failures (the first few) and a short summary only.
"""

from __future__ import annotations

import asyncio
import enum
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bulkfetch.board import Board, Snapshot
from bulkfetch.models import Job, Result, Status, Summary

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


def _total(snap: Snapshot) -> str:
    if snap.listing_done:
        return f"{snap.queued:,}"
    if snap.estimated_total is not None:
        return f"≥ {snap.queued:,} (≈ {snap.estimated_total:,})"
    return f"≥ {snap.queued:,}"


def status_line(snap: Snapshot) -> str:
    """One plain line for logs: no escapes, no carriage returns."""
    return (
        f"{snap.done:,}/{_total(snap)} done: {snap.ok:,} ok, {snap.failed:,} failed, "
        f"{snap.not_modified + snap.skipped:,} unchanged, {snap.retrying:,} retrying; "
        f"{human_bytes(snap.bytes)}; {snap.files_per_s:,.0f} files/s, "
        f"{human_bytes(snap.bytes_per_s)}/s; in flight {snap.in_flight}/{snap.limit}; "
        f"elapsed {human_duration(snap.elapsed_s)}, ETA {human_duration(snap.eta_s)}"
    )


def render_table(snap: Snapshot) -> RenderableType:
    """The live view: a pure function of one snapshot."""
    overview = Table.grid(padding=(0, 2))
    overview.add_column(style="bold")
    overview.add_column()
    overview.add_row("done", f"{snap.done:,} / {_total(snap)}")
    overview.add_row(
        "status",
        Text.assemble(
            (f"{snap.ok:,} ok", "green"), "  ", (f"{snap.failed:,} failed", "red"), "  ",
            (f"{snap.retrying:,} retrying", "yellow"), "  ",
            f"{snap.skipped:,} skipped  {snap.not_modified:,} not modified",
        ),
    )
    overview.add_row("received", human_bytes(snap.bytes))
    overview.add_row(
        "rate",
        f"{snap.files_per_s:,.0f} files/s  {human_bytes(snap.bytes_per_s)}/s  (last 5 s)   "
        f"{snap.avg_files_per_s:,.0f} files/s  {human_bytes(snap.avg_bytes_per_s)}/s  (average)",
    )
    overview.add_row(
        "time", f"{human_duration(snap.elapsed_s)} elapsed   ETA {human_duration(snap.eta_s)}"
    )
    overview.add_row("in flight", f"{snap.in_flight} / {snap.limit}")
    parts: list[RenderableType] = [overview]
    if snap.transfers:
        transfers = Table(box=None, padding=(0, 1), expand=False, header_style="bold")
        transfers.add_column("downloading", overflow="ellipsis", no_wrap=True, max_width=60)
        transfers.add_column("bytes", justify="right")
        transfers.add_column("speed", justify="right")
        transfers.add_column("try", justify="right")
        for t in snap.transfers:
            size = human_bytes(t.received)
            if t.total is not None:
                size = f"{size} / {human_bytes(t.total)}"
            transfers.add_row(t.name, size, f"{human_bytes(t.bytes_per_s)}/s", str(t.attempt))
        parts.append(transfers)
    if snap.failures:
        failures = Table(box=None, padding=(0, 1), header_style="bold red")
        failures.add_column("recent failures", overflow="ellipsis", no_wrap=True)
        for line in snap.failures:
            failures.add_row(line)
        parts.append(failures)
    return Group(*parts)


def summary_lines(summary: Summary, manifest: Path) -> list[str]:
    seconds = max(summary.elapsed_s, 1e-9)
    lines = []
    if summary.interrupted_by is not None:
        name = signal.Signals(summary.interrupted_by).name
        lines.append(f"interrupted by {name}; the manifest lists what finished")
    lines.append(
        f"{summary.ok:,} ok, {summary.failed:,} failed, {summary.not_modified:,} not modified, "
        f"{summary.skipped:,} skipped; {human_bytes(summary.bytes)} in "
        f"{human_duration(summary.elapsed_s)} ({summary.total / seconds:,.0f} files/s, "
        f"{human_bytes(summary.bytes / seconds)}/s)"
    )
    lines.append(f"manifest: {manifest}")
    return lines


def summary_table(summary: Summary, manifest: Path) -> Table:
    seconds = max(summary.elapsed_s, 1e-9)
    table = Table(title="bulkfetch summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if summary.interrupted_by is not None:
        table.add_row("stopped by", Text(signal.Signals(summary.interrupted_by).name, "red"))
    table.add_row("ok", Text(f"{summary.ok:,}", "green"))
    table.add_row("failed", Text(f"{summary.failed:,}", "red" if summary.failed else ""))
    table.add_row("not modified", f"{summary.not_modified:,}")
    table.add_row("skipped", f"{summary.skipped:,}")
    table.add_row("bytes written", human_bytes(summary.bytes))
    table.add_row("elapsed", human_duration(summary.elapsed_s))
    rate = f"{summary.total / seconds:,.0f} files/s, {human_bytes(summary.bytes / seconds)}/s"
    table.add_row("average", rate)
    table.add_row("manifest", str(manifest))
    return table


class Display:
    """The run's Observer for people: counts on a Board, prints lines, drives the live view."""

    def __init__(
        self,
        settings: DisplaySettings,
        *,
        limit: int,
        stream: TextIO,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.board = Board(limit=limit, clock=clock)
        self._stream = stream
        self._console = console or Console(file=stream)
        self._failures = 0

    # Observer: forwarded to the board, plus the lines some modes print.

    def queued(self) -> None:
        self.board.queued()

    def listing_read(self, read_bytes: int, total_bytes: int) -> None:
        self.board.listing_read(read_bytes, total_bytes)

    def listing_done(self) -> None:
        self.board.listing_done()

    def started(self, job: Job, attempt: int) -> None:
        self.board.started(job, attempt)

    def responded(self, job: Job, content_length: int | None) -> None:
        self.board.responded(job, content_length)

    def received(self, job: Job, nbytes: int) -> None:
        self.board.received(job, nbytes)

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
        """One line on stderr; above the table when it is live."""
        if self.settings.mode is Mode.LIVE:
            self._console.print(Text(f"bulkfetch: {line}"), soft_wrap=True)
        else:
            print(f"bulkfetch: {line}", file=self._stream, flush=True)

    async def run(self) -> None:
        """Refresh the view until cancelled; the caller cancels it when the run ends."""
        if self.settings.mode is Mode.LIVE:
            await self._run_live()
        elif self.settings.mode is Mode.PLAIN and self.settings.status_interval_s > 0:
            while True:
                await asyncio.sleep(self.settings.status_interval_s)
                self.say(status_line(self.board.snapshot()))

    async def _run_live(self) -> None:
        with Live(
            render_table(self.board.snapshot()), console=self._console, auto_refresh=False,
            transient=True, redirect_stdout=False, redirect_stderr=False,
        ) as live:
            while True:
                await asyncio.sleep(REFRESH_S)
                live.update(render_table(self.board.snapshot()), refresh=True)

    def show_summary(self, summary: Summary, manifest: Path) -> None:
        if self.settings.mode is Mode.LIVE:
            self._console.print(summary_table(summary, manifest))
        else:
            for line in summary_lines(summary, manifest):
                self.say(line)


def _result_line(result: Result) -> str:
    http = result.http_status if result.http_status is not None else "-"
    where = result.path if result.error is None else result.error
    return f"{result.status}: {result.url} [{http}] {result.bytes:,} B -> {where}"
