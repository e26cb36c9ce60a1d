"""The display's pure parts: counters, rates, ETA and rendering, on a fixed clock."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from bulkfetch.models import Job, Result, SafeRelPath, Status, Summary
from bulkfetch.show.board import Board, Snapshot
from bulkfetch.show.display import human_bytes, human_duration, status_line, summary_lines, total
from bulkfetch.show.live import render_table, summary_table
from bulkfetch.show.outgoing import make_result


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(n: int) -> Job:
    return Job(where=f"u:{n}", url=f"http://h/{n}", path=SafeRelPath(f"h/file-{n}.bin"))


def result(n: int, status: Status = Status.OK, size: int = 1000) -> Result:
    error = "HTTP 404 Not Found" if status is Status.FAILED else None
    return Result(url=f"http://h/{n}", status=status, path=None if error else f"h/file-{n}.bin",
                  http_status=404 if error else 200, bytes=0 if error else size,
                  received=0 if error else size, sha256=None, attempts=1, elapsed=0.1, error=error,
                  final_url=None, content_type=None, fetched_at="2026-12-02T20:00:00.000Z")


def busy_board() -> tuple[Board, Clock]:
    """Ten seconds into a run: 8 of 10 listed URLs done, two downloads under way."""
    clock = Clock()
    board = Board(limit=4, clock=clock)
    board.snapshot()
    for _ in range(10):
        board.queued()
    board.listing_done()
    for n in range(8):
        clock.now += 1
        board.started(job(n), 1)
        board.responded(job(n), 1000)
        board.received(job(n), 1000)
        board.ended(job(n))
        board.finished(result(n, Status.FAILED if n == 3 else Status.OK))
        board.snapshot()
    clock.now += 2
    board.started(job(8), 2)
    board.responded(job(8), 5_000_000)
    board.received(job(8), 1_000_000)
    board.received(job(8), 1_000_000)
    board.started(job(9), 1)
    board.ended(job(9))
    board.retrying(job(9), 1, 1.0, "HTTP 503")
    return board, clock


def render_text(snap: Snapshot, width: int = 100) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False).print(
        render_table(snap, width)
    )
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def test_counts_rates_and_eta() -> None:
    board, _ = busy_board()
    snap = board.snapshot()
    assert (snap.done, snap.ok, snap.failed, snap.queued) == (8, 7, 1, 10)
    assert (snap.in_flight, snap.retrying, snap.limit) == (1, 1, 4)
    assert snap.bytes == 8 * 1000 + 2_000_000
    assert snap.elapsed_s == 10.0
    # The window holds the samples of the last 5 s: from t=105 (5 done) to t=110 (8 done).
    assert snap.files_per_s == 3 / 5
    assert snap.avg_files_per_s == 0.8
    # Two files at 3 per 5 s would take 3.3 s; the big one's 3 MB still to come take longer.
    assert 2 / (3 / 5) < snap.eta_s == 3_000_000 / snap.bytes_per_s
    assert [t.name for t in snap.transfers] == ["h/file-8.bin"]
    assert snap.transfers[0].bytes_per_s == 2_000_000 / 0.001  # started this very moment
    assert snap.failures == ("http://h/3: HTTP 404 Not Found",)


def test_total_is_a_lower_bound_while_listing() -> None:
    board = Board(limit=2, clock=Clock())
    board.queued()
    snap = board.snapshot()
    assert not snap.listing_done and snap.eta_s is None
    assert status_line(snap).startswith("0/≥ 1 done")


def test_total_is_estimated_from_the_share_of_bytes_read() -> None:
    """A quarter of the lists' bytes gave 100 URLs: about 400 in all, and an ETA from that."""
    clock = Clock()
    board = Board(limit=2, clock=clock)
    board.snapshot()
    for n in range(100):
        board.queued()
        if n < 50:
            board.finished(result(n))
    board.listing_read(1000, 4000)
    clock.now += 5
    snap = board.snapshot()
    assert snap.estimated_total == 400
    assert snap.eta_s == 350 / (50 / 5)
    assert status_line(snap).startswith("50/≥ 100 (≈ 400) done")


def test_status_line_is_plain() -> None:
    board, _ = busy_board()
    line = status_line(board.snapshot())
    assert line == (
        "8/10 done: 7 ok, 1 failed, 0 not modified, 0 skipped, 1 retrying; 2.0 MB; 1 files/s, "
        "400.6 kB/s; in flight 1/4; elapsed 0:10, ETA 0:07"
    )
    assert "\x1b" not in line and "\r" not in line


def test_render_table() -> None:
    board, _ = busy_board()
    assert render_text(board.snapshot()) == GOLDEN_TABLE


def test_a_split_body_shows_its_connections_and_they_count_in_flight() -> None:
    """--split: the body's row says over how many connections it comes now, and the extra
    connections hold slots of their own (in flight); both go back when the body is whole."""
    board, _ = busy_board()
    board.connections(job(8), 16)
    snap = board.snapshot()
    assert snap.in_flight == 16
    text = render_text(snap)
    assert " downloading             bytes     speed  conn  try" in text
    assert " h/file-8.bin  2.0 MB / 5.0 MB  2.0 GB/s    16    2" in text
    board.connections(job(8), 1)
    assert board.snapshot().in_flight == 1
    assert render_text(board.snapshot()) == GOLDEN_TABLE  # no column while nothing is split


GOLDEN_TABLE = """\
done       8 / 10
status     7 ok  1 failed  1 retrying  0 skipped  0 not modified
received   2.0 MB
rate       1 files/s  400.6 kB/s  (last 5 s)   1 files/s  200.8 kB/s  (average)
time       0:10 elapsed   ETA 0:07
in flight  1 / 4
 downloading             bytes     speed  try
 h/file-8.bin  2.0 MB / 5.0 MB  2.0 GB/s    2
 recent failures
 http://h/3: HTTP 404 Not Found
"""


def test_summary_renderings() -> None:
    summary = Summary(ok=7, failed=1, not_modified=0, skipped=2, bytes=3_500_000,
                      elapsed_s=125.0, interrupted_by=15, received=2_500_000, interrupted=3,
                      kept_for_resume=12_000_000)
    lines = summary_lines(summary, Path("out/m.jsonl"))
    assert lines == [
        "interrupted by SIGTERM: 3 URLs cut off, 12.0 MB kept for resume; the manifest lists "
        "what finished",
        "7 ok, 1 failed, 0 not modified, 2 skipped; 3.5 MB saved, 2.5 MB received in 2:05 "
        "(0 files/s, 20.0 kB/s)",
        "manifest: out/m.jsonl",
    ]
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(summary_table(summary, Path("m")))
    text = out.getvalue()
    assert "stopped by" in text and "SIGTERM" in text and "20.0 kB/s" in text
    assert "received" in text and "2.5 MB" in text


def test_human_units() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 1_234_567, 5e12)] == [
        "0 B", "999 B", "1.0 kB", "1.2 MB", "5.0 TB"]
    assert [human_duration(s) for s in (None, 0, 59.6, 61, 3600 * 25 + 61)] == [
        "?", "0:00", "1:00", "1:01", "25:01:01"]


def test_a_url_with_a_password_leaves_the_downloading_list_when_it_finishes() -> None:
    board = Board(limit=4, clock=Clock())
    secret = Job(where="u:1", url="http://pat:s3cret@h/x", path=SafeRelPath("h/x"))
    board.queued()
    board.started(secret, 1)
    board.responded(secret, 100)
    board.received(secret, 100)
    assert len(board.snapshot().transfers) == 1
    board.ended(secret)
    board.finished(make_result(secret.url, Status.OK, path="h/x", size=100))
    assert board.snapshot().transfers == ()


def test_the_total_is_exact_once_the_lists_are_read() -> None:
    board = Board(limit=4, clock=Clock())
    for _ in range(3):
        board.queued()
    board.listing_read(300, 1000)
    assert total(board.snapshot()) == "≥ 3 (≈ 10)"
    board.listing_total(10)  # read to the end; 7 entries still on their way to the window
    snap = board.snapshot()
    assert total(snap) == "10" and snap.listing_done


def test_the_eta_counts_the_bytes_of_big_transfers_in_flight() -> None:
    clock = Clock()
    board = Board(limit=4, clock=clock)
    board.snapshot()
    for _ in range(10):
        board.queued()
    board.listing_done()
    big = job(0)
    board.started(big, 1)
    board.responded(big, 100_000_000)
    for n in range(1, 10):  # nine small files done within a second
        board.started(job(n), 1)
        board.received(job(n), 1000)
        board.finished(result(n))
    clock.now += 1
    board.received(big, 1_000_000)
    board.received(big, 1_000_000)
    snap = board.snapshot()
    left = 98_000_000 / snap.bytes_per_s
    assert snap.eta_s is not None and snap.eta_s >= left > 1  # not the one file's 0.1 s


def test_a_body_that_came_in_one_read_shows_no_speed() -> None:
    clock = Clock()
    board = Board(limit=4, clock=clock)
    one, two = job(1), job(2)
    for j in (one, two):
        board.started(j, 1)
        board.responded(j, 2000)
    board.received(one, 2000)
    board.received(two, 1000)
    clock.now += 0.5
    board.received(two, 1000)
    speeds = {t.name: t.bytes_per_s for t in board.snapshot().transfers}
    assert speeds[one.path] is None and speeds[two.path] == 4000
