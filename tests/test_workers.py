"""--workers: several processes, one manifest, the same guarantees as one process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bulkfetch.intake import Source
from bulkfetch.models import Settings
from bulkfetch.shard import Shard
from bulkfetch.shards import choose
from tests.conftest import run_cli, write_list
from tests.helpers import MANIFEST, assert_tidy, read_manifest
from tests.server import Server
from tests.test_signals import start_stalled_run


@pytest.mark.parametrize("count", [2, 3, 4])
def test_every_entry_has_exactly_one_owner_and_the_deal_is_even(count: int) -> None:
    shards = [Shard(i, count) for i in range(count)]
    owners = [[s.index for s in shards if s.owns(seq)] for seq in range(1200)]
    assert all(len(o) == 1 for o in owners)
    counts = [sum(1 for o in owners if o[0] == s.index) for s in shards]
    assert max(counts) - min(counts) <= 1
    # The first entries (four big files, say): one to each worker before any gets a second.
    assert len({o[0] for o in owners[:count]}) == count
    # A list that alternates a big file and its small signature: the big ones are spread.
    big_to = [o[0] for o in owners[::2]]
    assert min(big_to.count(i) for i in range(count)) > 600 / count * 0.7
    assert [Shard(i, 3).share(50) for i in range(3)] == [17, 17, 16]


def test_worker_count_follows_the_limits(tmp_path: Path) -> None:
    listing = write_list(tmp_path / "u", ["http://127.0.0.1/a"])
    fd = os.open(listing, os.O_RDONLY)
    read_end, write_end = os.pipe()
    try:
        files = [Source("u", fd)]
        base = Settings(sources=("u",), out=tmp_path, manifest=tmp_path / "m")
        assert choose(3, base, files) == 3
        assert choose(3, Settings(sources=(), out=tmp_path, manifest=tmp_path, concurrency=2),
                      files) == 2
        for limit in ({"per_host": 4}, {"rate": 100.0}, {"host_rate": 10.0}):
            limited = Settings(sources=(), out=tmp_path, manifest=tmp_path, **limit)  # type: ignore[arg-type]
            assert choose(3, limited, files) == 1  # one pacer keeps a shared limit exactly
        assert choose(3, base, [*files, Source("-", read_end)]) == 1  # a pipe is read once
    finally:
        for f in (fd, read_end, write_end):
            os.close(f)


def test_two_workers_fetch_everything_once(server: Server, tmp_path: Path) -> None:
    ok = [server.url(f"/bytes/{100 + i}?delay=0.02") for i in range(120)]
    flaky = [server.url(f"/flaky/w{i}/1/503") for i in range(10)]
    missing = [server.url(f"/status/404?i={i}") for i in range(10)]
    urls = ok + flaky + missing + ok[:5]  # the repeats are dropped, as in one process
    out = tmp_path / "out"
    proc = run_cli(
        str(write_list(tmp_path / "u", [*urls, "ftp://nope/x"])), "-o", str(out), "-c", "6",
        "-w", "2",
    )
    assert proc.returncode == 1, proc.stderr
    rows = read_manifest(out / MANIFEST)
    assert set(rows) == {*ok, *flaky, *missing, "ftp://nope/x"}
    assert sum(r["status"] == "ok" for r in rows.values()) == 130
    assert all(rows[u]["status"] == "ok" and rows[u]["attempts"] == 2 for u in flaky)
    assert_tidy(out, rows)
    assert "130 ok, 11 failed" in proc.stderr
    # The shares of -c add up to -c: the server never saw more at once.
    assert 3 < server.stats.max_in_flight <= 6


def test_one_name_twice_is_still_refused(server: Server, tmp_path: Path) -> None:
    """The same NAME always falls to one worker, so the clash is seen."""
    lines = [f"{server.url(f'/bytes/{10 + i}')} same.bin" for i in range(2)]
    out = tmp_path / "out"
    proc = run_cli(str(write_list(tmp_path / "u", lines)), "-o", str(out), "-w", "2")
    assert proc.returncode == 1
    rows = read_manifest(out / MANIFEST)
    assert sorted(r["status"] for r in rows.values()) == ["failed", "ok"]
    assert_tidy(out, rows)


def test_planning_decides_as_one_process_would(server: Server, tmp_path: Path) -> None:
    """A URL again under a NAME is still the same URL; a NAME that needs another as a folder is
    still refused: every worker plans every line."""
    again = server.url("/bytes/31")
    lines = [again, f"{again} named.bin", *(f"{server.url(f'/bytes/{40 + i}')} d{i}" for i in
             range(6)), *(f"{server.url(f'/bytes/{50 + i}')} d{i}/x" for i in range(6))]
    out = tmp_path / "out"
    proc = run_cli(str(write_list(tmp_path / "u", lines)), "-o", str(out), "-w", "2")
    assert proc.returncode == 1
    rows = read_manifest(out / MANIFEST)
    assert len(rows) == 13 and server.stats.count("/bytes/31") == 1
    assert sum(r["status"] == "failed" for r in rows.values()) == 6
    assert_tidy(out, rows)


def test_second_run_skips_what_workers_saved(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{200 + i}") for i in range(40)]
    listing = write_list(tmp_path / "u", urls)
    out = tmp_path / "out"
    assert run_cli(str(listing), "-o", str(out), "-w", "2").returncode == 0
    again = run_cli(str(listing), "-o", str(out), "-w", "2", "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert "40 skipped" in again.stderr
    assert server.stats.count("/bytes/200") == 1


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_the_parent_stops_every_worker(
    server: Server, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    proc, out, done = start_stalled_run(server, tmp_path, "-w", "2")
    sent = time.monotonic()
    proc.send_signal(signum)  # to the parent alone, as `docker stop` or `kill PID` does
    _, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 10
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    rows = read_manifest(out / MANIFEST)
    assert set(rows) == set(done)
    assert_tidy(out, rows)
    assert not list(out.rglob("*.part"))
    # Nothing is left running: the lock on --out is free again.
    assert run_cli(str(write_list(tmp_path / "v", done[:1])), "-o", str(out)).returncode == 0


def test_a_killed_worker_is_one_line_and_the_rest_is_kept(server: Server, tmp_path: Path) -> None:
    """The OOM killer or `kill -9` on a worker: no traceback, exit 1, the manifest valid."""
    proc, out, done = start_stalled_run(server, tmp_path, "-w", "2")
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(workers) == 2
    # Kill a worker that has a download on disk: its temp file stays behind.
    victim = next(out.rglob(".bulkfetch-*.part")).name.split("-")[1]
    assert victim in workers
    os.kill(int(victim), signal.SIGKILL)
    proc.send_signal(signal.SIGTERM)  # the other one stops cleanly
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"worker process {victim} was killed by SIGKILL" in stderr
    assert set(read_manifest(out / MANIFEST)) == set(done)
    litter = list(out.rglob(".bulkfetch-*.part"))
    assert litter and all(f".bulkfetch-{victim}-" in p.name for p in litter)
    # The next run on --out removes what the killed worker left.
    assert run_cli(str(write_list(tmp_path / "v", done[:1])), "-o", str(out)).returncode == 0
    assert not list(out.rglob(".bulkfetch-*.part"))
