"""The live view on a terminal: rich lives here and nowhere else, imported only when a
terminal shows the run.

It is refreshed from an asyncio task (never from rich's own thread, so it only ever reads an
immutable `Snapshot`) and replaced by a summary table at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bulkfetch.models import Summary
from bulkfetch.show.board import Board, Snapshot
from bulkfetch.show.display import REFRESH_S, capped, human_bytes, human_duration, total
from bulkfetch.show.outgoing import line as shown


class LiveView:
    def __init__(self, stream: TextIO) -> None:
        self._console = Console(file=stream, force_terminal=True)

    def say(self, line: str) -> None:
        """A line above the table."""
        self._console.print(Text(line), soft_wrap=True)  # through outgoing.line in Display.say

    async def run(self, board: Board) -> None:
        """Refresh until cancelled."""
        with Live(
            render_table(board.snapshot(), self._console.width), console=self._console,
            auto_refresh=False,
            transient=True, redirect_stdout=False, redirect_stderr=False,
        ) as live:
            while True:
                await asyncio.sleep(REFRESH_S)
                live.update(render_table(board.snapshot(), self._console.width), refresh=True)

    def show_summary(self, summary: Summary, manifest: Path | str) -> None:
        self._console.print(summary_table(summary, manifest))


WIDE = 96  # from here on, every column; below, the least needed go first
NARROW = 64  # below this, only each transfer's name and speed


def render_table(snap: Snapshot, width: int = 120) -> RenderableType:
    """The live view: a pure function of one snapshot, and of the terminal's width. Nothing
    wraps: at any width from 40 columns each row is one line (columns dropped, names cut in
    the middle, where a URL's host and file are)."""
    parts: list[RenderableType] = [_overview(snap, width)]
    if snap.transfers:
        parts.append(_transfers(snap, width))
    if snap.failures:
        failures = Table(box=None, padding=(0, 1), header_style="bold red")
        failures.add_column("recent failures", no_wrap=True)
        for line in snap.failures:
            failures.add_row(Text(middle(shown(line), width - 2)))
        parts.append(failures)
    return Group(*parts)


def _overview(snap: Snapshot, width: int) -> Table:
    overview = Table.grid(padding=(0, 2))
    overview.add_column(style="bold", no_wrap=True)
    overview.add_column(no_wrap=True, overflow="ellipsis", max_width=max(width - 12, 20))
    overview.add_row("done", f"{snap.done:,} / {total(snap)}")
    status: list[str | tuple[str, str]] = [
        (f"{snap.ok:,} ok", "green"), "  ", (f"{snap.failed:,} failed", "red")]
    for count, what in ((snap.retrying, "retrying"), (snap.skipped, "skipped"),
                        (snap.not_modified, "not modified")):
        if count or width >= WIDE:
            status += ["  ", (f"{count:,} {what}", "yellow" if what == "retrying" else "")]
    overview.add_row("status", Text.assemble(*status))
    overview.add_row("received", human_bytes(snap.bytes))
    rate = f"{snap.files_per_s:,.0f} files/s  {human_bytes(snap.bytes_per_s)}/s{capped(snap)}"
    if width >= WIDE:
        rate += (f"  (last 5 s)   {snap.avg_files_per_s:,.0f} files/s  "
                 f"{human_bytes(snap.avg_bytes_per_s)}/s  (average)")
    overview.add_row("rate", rate)
    overview.add_row(
        "time", f"{human_duration(snap.elapsed_s)} elapsed   ETA {human_duration(snap.eta_s)}"
    )
    overview.add_row("in flight", f"{snap.in_flight} / {snap.limit}")
    if snap.paused:
        overview.add_row("paused", Text(shown("; ".join(snap.paused)), style="yellow"))
    if snap.waiting_on:
        overview.add_row("waiting on", Text(shown("; ".join(snap.waiting_on)), style="yellow"))
    return overview


def _transfers(snap: Snapshot, width: int) -> Table:
    """One row a transfer: its name cut to what the other columns leave."""
    wide, narrow = width >= WIDE, width < NARROW
    columns = [("speed", 11)] if narrow else [("bytes", 19 if wide else 9), ("speed", 11)]
    split = not narrow and any(t.connections > 1 for t in snap.transfers)
    if split:  # --split at work: over how many connections each body comes now
        columns.append(("conn", 4))
    if wide:
        columns.append(("try", 3))
    room = width - 2 - sum(most + 2 for _, most in columns)
    transfers = Table(box=None, padding=(0, 1), expand=False, header_style="bold")
    transfers.add_column("downloading", no_wrap=True, max_width=room)
    for name, most in columns:
        transfers.add_column(name, justify="right", no_wrap=True, max_width=most)
    for t in snap.transfers:
        speed = f"{human_bytes(t.bytes_per_s)}/s" if t.bytes_per_s is not None else "—"
        size = human_bytes(t.received)
        if t.total is not None and wide:
            size = f"{size} / {human_bytes(t.total)}"
        elif t.total is not None:
            size = f"{t.received / max(t.total, 1):.0%}"
        cells = [speed] if narrow else [size, speed]
        if split:
            cells.append(str(t.connections))
        if wide:
            cells.append(str(t.attempt))
        # Text, not str: a URL holding "[red]" is not markup.
        transfers.add_row(Text(middle(shown(t.name), room)), *cells)
    return transfers


def middle(text: str, room: int) -> str:
    """`text` in at most `room` characters, cut in the middle (`https://host.ex…/file.iso`):
    a URL's host and its file name are what tell transfers apart."""
    if len(text) <= room:
        return text
    if room < 2:
        return text[:room]
    head = (room - 1) // 2
    return f"{text[:head]}…{text[len(text) - (room - 1 - head):]}"


def summary_table(summary: Summary, manifest: Path | str) -> Table:
    seconds = max(summary.elapsed_s, 1e-9)
    table = Table(title="bulkfetch summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if summary.interrupted_by is not None:
        table.add_row("stopped by", Text(signal.Signals(summary.interrupted_by).name, "red"))
        table.add_row("cut off", f"{summary.interrupted:,}")
        table.add_row("kept for resume", human_bytes(summary.kept_for_resume))
    table.add_row("ok", Text(f"{summary.ok:,}", "green"))
    table.add_row("failed", Text(f"{summary.failed:,}", "red" if summary.failed else ""))
    table.add_row("not modified", f"{summary.not_modified:,}")
    table.add_row("skipped", f"{summary.skipped:,}")
    table.add_row("bytes saved", human_bytes(summary.bytes))
    if summary.received != summary.bytes:  # resumed files, or bodies received and lost
        table.add_row("received", human_bytes(summary.received))
    table.add_row("elapsed", human_duration(summary.elapsed_s))
    rate = f"{summary.total / seconds:,.0f} files/s, {human_bytes(summary.received / seconds)}/s"
    table.add_row("average", rate)
    table.add_row("manifest", Text(shown(str(manifest))))
    return table


@contextlib.contextmanager
def bar(total_bytes: int, stream: TextIO) -> Iterator[tuple[Callable[[int], None],
                                                            Callable[[str], None]]]:
    """A progress bar over `total_bytes` for a command that is no run (`verify`): yields
    `advance(nbytes)` and `say(line)` (a line printed above the bar). The bar is gone at the
    end; the lines stay."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(file=stream, force_terminal=True)
    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("hashing", total=total_bytes)

        def say(text: str) -> None:
            console.print(Text(shown(text)), soft_wrap=True)

        yield (lambda n: progress.advance(task, n)), say
