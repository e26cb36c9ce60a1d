"""--split: one big body over several connections, each a Range request written at its place,
against the test server's /ranged (a strong ETag, ranges honoured, a rate per connection).
The file equals the origin's bytes; a run killed outright continues every segment; a server
that ignores ranges, changes the body between segments or caps a range is met correctly;
politeness holds."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.helpers import (
    MANIFEST,
    assert_tidy,
    bulkfetch_cmd,
    cli_env,
    read_manifest,
    run_cli,
    wait_for,
    write_list,
)
from tests.server import Server

MIB = 1024 * 1024
SIZE = 8 * MIB
SPLIT = ("--split", "4", "--min-split-size", "1M")


def ranged(server: Server, query: str = "") -> tuple[str, str]:
    name = uuid.uuid4().hex[:8]
    return name, server.url(f"/ranged/{name}?size={SIZE}&{query}")


def segments_asked(server: Server) -> list[str]:
    return [h["Range"] for h in server.stats.headers if "Range" in h]


def digest(server: Server, name: str) -> str:
    return hashlib.sha256(server.ranged_body(name, SIZE)).hexdigest()


def killed_mid_split(out: Path, *args: str, past: int) -> list[list[int]]:
    """The CLI with `args`, its whole group SIGKILLed once its pieces kept on disk hold more
    than `past` bytes; the pieces as it left them."""
    proc = subprocess.Popen(bulkfetch_cmd(*args), env=cli_env(), stderr=subprocess.DEVNULL,
                            start_new_session=True)
    meta = out / ".bulkfetch" / "partial"

    def progress() -> list[list[int]]:
        found = list(meta.glob("*.json"))
        kept = json.loads(found[0].read_text()) if found else {}
        segments: list[list[int]] = kept.get("segments", [])
        return segments

    try:
        wait_for(lambda: sum(done - start for start, _, done in progress()) > past)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    return progress()


def test_a_split_body_is_the_origins_bytes(server: Server, tmp_path: Path) -> None:
    name, url = ranged(server, f"rate={4 * MIB}")
    started = time.monotonic()
    proc = run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "out"), *SPLIT)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    row = read_manifest(tmp_path / "out" / MANIFEST)[url]
    on_disk = (tmp_path / "out" / row["path"]).read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == row["sha256"] == digest(server, name)
    assert sorted(segments_asked(server)) == [f"bytes={n * 2 * MIB}-{(n + 1) * 2 * MIB - 1}"
                                              for n in (1, 2, 3)]
    assert took < 1.5  # 2 s over one connection at 4 MiB/s
    assert_tidy(tmp_path / "out", {url: row})


def test_sigkill_then_every_segment_continues(server: Server, tmp_path: Path) -> None:
    name, url = ranged(server, f"rate={MIB}")
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", [url])
    kept = killed_mid_split(out, str(src), "-o", str(out), *SPLIT, past=2 * MIB)
    meta = out / ".bulkfetch" / "partial"
    assert all(done > start for start, _, done in kept)  # every segment had begun
    server.reset()
    again = run_cli(str(src), "-o", str(out), *SPLIT)
    assert again.returncode == 0, again.stderr
    row = read_manifest(out / MANIFEST)[url]
    assert row["sha256"] == digest(server, name) and row["bytes"] == SIZE
    assert row["received"] == SIZE - sum(done - start for start, _, done in kept)
    assert sorted(segments_asked(server)) == sorted(
        f"bytes={done}-{end - 1}" for _, end, done in kept)
    assert not list(meta.glob("*"))


def test_a_named_split_body_cut_off_keeps_its_name(server: Server, tmp_path: Path) -> None:
    """--content-disposition: pieces kept by a run killed outright continue under the name
    the first answer gave (kept with them), not the URL's."""
    name, url = ranged(server, f"rate={MIB}&named=model%20weights.bin")
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", [url])
    args = (str(src), "-o", str(out), *SPLIT, "--content-disposition")
    killed_mid_split(out, *args, past=MIB)
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    row = read_manifest(out / MANIFEST)[url]
    assert row["sha256"] == digest(server, name) and row["received"] < SIZE
    assert re.fullmatch(r"127\.0\.0\.1_\d+/model weights-[0-9a-f]{16}\.bin", row["path"]), row
    assert (out / row["path"]).stat().st_size == SIZE


def test_a_server_that_will_not_range_gets_one_connection(
    server: Server, tmp_path: Path
) -> None:
    """It says Accept-Ranges, then answers a range with the whole body (200): the attempt
    stops, and the next one goes over one connection, never joining two answers."""
    name, url = ranged(server)
    server.ignore_ranges.add(name)
    proc = run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "out"), *SPLIT)
    assert proc.returncode == 0, proc.stderr
    row = read_manifest(tmp_path / "out" / MANIFEST)[url]
    assert row["sha256"] == digest(server, name) and row["attempts"] == 2


def test_a_body_that_changes_between_segments_starts_over(
    server: Server, tmp_path: Path
) -> None:
    """Another version while the segments come (each range capped, so they keep asking):
    If-Range with the old ETag gets the whole new body (200), the attempt starts over, and
    the bytes of two versions are never joined."""
    name, url = ranged(server, f"rate={2 * MIB}&cap={MIB // 2}")
    out = tmp_path / "out"
    proc = subprocess.Popen(bulkfetch_cmd(str(write_list(tmp_path / "u", [url])), "-o",
                                          str(out), *SPLIT), env=cli_env(),
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(segments_asked(server)) >= 3)
    server.versions[name] = 2
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    row = read_manifest(out / MANIFEST)[url]
    assert row["sha256"] == digest(server, name)  # the new version, whole
    assert row["attempts"] >= 2
    data = (out / row["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == row["sha256"]


def test_a_capped_range_is_asked_for_the_rest(server: Server, tmp_path: Path) -> None:
    name, url = ranged(server, f"cap={MIB}")
    proc = run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "out"), *SPLIT)
    assert proc.returncode == 0, proc.stderr
    row = read_manifest(tmp_path / "out" / MANIFEST)[url]
    assert row["sha256"] == digest(server, name) and row["attempts"] == 1
    assert len(segments_asked(server)) >= 6  # 3 segments of 2 MiB, 1 MiB a range


def test_segments_count_against_per_host(server: Server, tmp_path: Path) -> None:
    """--per-host 2 with --split 8: the extra connections wait for slots of the host like any
    request; without the limit the two files would take 16 connections. (The server may
    count one more per file for a moment: the first answer's connection, closed after its
    piece, is still ending there as that slot's next range arrives. The grant itself is
    exact: test_a_borrowed_slot_waits_for_the_host.)"""
    urls = [ranged(server, f"rate={4 * MIB}")[1] for _ in range(2)]
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "--split", "8", "--min-split-size", "1M", "--per-host", "2")
    assert proc.returncode == 0, proc.stderr
    assert max(server.stats.host_max_in_flight.values()) <= 2 + len(urls)
    assert len(segments_asked(server)) >= 2  # some segments still went over other slots


def test_a_borrowed_slot_waits_for_the_host() -> None:
    """The decision itself: with --per-host 1 and the host's one request in flight, a split
    body's extra connection is granted only when that request ends."""
    import asyncio

    from bulkfetch.models import Job, SafeRelPath, Ticket
    from bulkfetch.schedule.frontier import Frontier
    from bulkfetch.schedule.retry import RetryPolicy
    from bulkfetch.schedule.scheduler import Scheduler
    from bulkfetch.show.events import NullObserver

    class Slots:
        busy = 0

        def room(self) -> bool:
            return self.busy < 4

        def start(self, ticket: Ticket) -> None:
            self.busy += 1

        def hold(self) -> None:
            self.busy += 1

        def release(self) -> None:
            self.busy -= 1

    async def main() -> list[str]:
        frontier = Frontier(per_host=1)
        scheduler = Scheduler(frontier, RetryPolicy(), lambda *a: None, NullObserver(),
                              window=10)
        job = Job("l:1", "http://h/x", SafeRelPath("h/x"), host="h:80")
        first = Ticket(0, job)
        frontier.add(first, 0.0)
        slots = Slots()
        dispatch = asyncio.create_task(scheduler._dispatch(slots))
        await asyncio.sleep(0.01)
        said: list[str] = []

        async def extra() -> None:
            async with scheduler.borrow(job):
                said.append("granted")

        task = asyncio.create_task(extra())
        await asyncio.sleep(0.05)
        said.append(f"waiting, {slots.busy} busy")
        scheduler.ended(Ticket(0, job, 1))  # the host's one request ends
        await asyncio.wait_for(task, 1)
        dispatch.cancel()
        return said

    assert asyncio.run(main()) == ["waiting, 1 busy", "granted"]


def test_split_runs_in_one_process(tmp_path: Path) -> None:
    proc = run_cli("http://127.0.0.1:9/x", "-o", str(tmp_path / "out"), "--split", "4",
                   "-w", "2")
    assert proc.returncode == 2 and "--split runs in one process" in proc.stderr


def test_pieces_kept_by_a_split_run_continue_without_split(
    server: Server, tmp_path: Path
) -> None:
    """A --split run killed; the next run has no --split and two worker processes (no
    scheduler to borrow from there): every piece still continues, over one connection."""
    name, url = ranged(server, f"rate={MIB}")
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", [url])
    killed_mid_split(out, str(src), "-o", str(out), *SPLIT, past=MIB)
    again = run_cli(str(src), "-o", str(out), "-w", "2")
    assert again.returncode == 0, again.stderr
    row = read_manifest(out / MANIFEST)[url]
    assert row["sha256"] == digest(server, name) and row["received"] < SIZE


def test_the_live_table_shows_the_connections_of_a_split_body(
    server: Server, tmp_path: Path,
) -> None:
    """On a terminal the split body's row says it comes over 4 connections, and they are in
    flight: four slots."""
    from tests.test_output import ANSI, run_in_pty

    _, url = ranged(server, f"rate={2 * MIB}")
    env = {**cli_env(), "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    code, out = run_in_pty([str(write_list(tmp_path / "u", [url])), "-o",
                            str(tmp_path / "out"), *SPLIT], env)
    assert code == 0, out
    text = ANSI.sub("", out)
    assert re.search(r"downloading +bytes +speed +conn +try", text), text
    assert re.search(r"/s +4 +1\s", text), text
    assert re.search(r"in flight +4 / 50", text), text
