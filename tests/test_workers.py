"""--workers: several processes, one manifest, the same guarantees as one process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bulkfetch.models import Settings
from bulkfetch.schedule.workers import choose, share
from tests.helpers import (
    MANIFEST,
    assert_cut_off,
    assert_tidy,
    bulkfetch_cmd,
    cli_env,
    read_manifest,
    run_cli,
    start_stalled_run,
    wait_for,
    write_list,
)
from tests.server import Server


def test_the_shares_of_a_limit_add_up_to_it() -> None:
    assert [share(50, i, 3) for i in range(3)] == [17, 17, 16]
    assert sum(share(7, i, 4) for i in range(4)) == 7


def test_worker_count_follows_the_limits(tmp_path: Path) -> None:
    base = Settings(sources=("u",), out=tmp_path, manifest=tmp_path / "m")
    assert choose(3, base) == 3
    assert choose(3, Settings(sources=(), out=tmp_path, manifest=tmp_path, concurrency=2)) == 2
    # Limits shared by all requests are the parent's: they no longer force one process.
    for limit in ({"per_host": 4}, {"rate": 100.0}, {"host_rate": 10.0}):
        limited = Settings(sources=(), out=tmp_path, manifest=tmp_path, **limit)  # type: ignore[arg-type]
        assert choose(3, limited) == 3


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
    try:
        _, stderr = proc.communicate(timeout=30)  # past the parent's 10 s for its workers
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - sent
    assert took < 10, f"stopped after {took:.1f} s: {stderr}"
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    rows = read_manifest(out / MANIFEST)
    assert_cut_off(rows, done)
    assert_tidy(out, rows)
    assert not list(out.rglob("*.part"))
    # Nothing is left running: the lock on --out is free again.
    assert run_cli(str(write_list(tmp_path / "v", done[:1])), "-o", str(out)).returncode == 0


def test_a_worker_that_does_not_stop_is_killed_and_said(
    server: Server, tmp_path: Path,
) -> None:
    """A worker wedged (here frozen with SIGSTOP) when the run stops: the parent waits its 10 s
    for it, then kills it and says so; the run ends as a stopped run does, nothing left
    running."""
    proc, out, done = start_stalled_run(server, tmp_path, "-w", "2")
    frozen = workers_of(proc.pid)[0]
    os.kill(frozen, signal.SIGSTOP)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 9 < time.monotonic() - sent < 20
    assert proc.returncode == 143, stderr
    assert f"worker process {frozen} did not stop within 10 s; killed" in stderr, stderr
    assert "Traceback" not in stderr
    assert not Path(f"/proc/{frozen}").exists() or "zombie" in Path(
        f"/proc/{frozen}/status").read_text()
    assert set(done) <= set(read_manifest(out / MANIFEST))
    assert run_cli(str(write_list(tmp_path / "v", done[:1])), "-o", str(out)).returncode == 0


def workers_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_killed_workers_urls_go_to_the_other(server: Server, tmp_path: Path) -> None:
    """The OOM killer or `kill -9` on a worker: the display says so, what it had in flight
    goes to the other worker, and the run completes with every URL in the manifest."""
    urls = [server.url(f"/bytes/{100 + i}?delay=0.3") for i in range(40)]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        bulkfetch_cmd(str(write_list(tmp_path / "u", urls)), "-o", str(out), "-c", "8",
                      "-w", "2"),
        stderr=subprocess.PIPE, text=True, env=cli_env(),
    )
    wait_for(lambda: (out / MANIFEST).exists() and server.stats.in_flight == 8)
    victim = workers_of(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert re.search(f"worker process {victim} died; \\d+ URLs? it had in flight go to the "
                     "others", stderr)
    assert "Traceback" not in stderr
    rows = read_manifest(out / MANIFEST)
    assert set(rows) == set(urls)
    assert_tidy(out, rows)
    assert len(server.stats.paths) > len(urls)  # the lost requests were made again


def test_a_killed_parent_leaves_no_worker_running(server: Server, tmp_path: Path) -> None:
    """SIGKILL of the parent: its workers stop within a second, and the next run may start."""
    proc, out, done = start_stalled_run(server, tmp_path, "-w", "2")
    children = workers_of(proc.pid)
    assert len(children) == 2
    proc.kill()
    proc.communicate(timeout=10)
    wait_for(lambda: not any(Path(f"/proc/{c}").exists() and _not_zombie(c) for c in children),
             timeout=1.0)
    assert not list(out.rglob(".bulkfetch-*.part"))
    assert run_cli(str(write_list(tmp_path / "v", done[:1])), "-o", str(out)).returncode == 0


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_to_the_whole_group_ends_like_any_sigterm(server: Server, tmp_path: Path) -> None:
    """`systemctl stop` signals the parent and every worker at once: exit 143, the manifest
    valid, no temp file left beside the data, no traceback."""
    proc, out, done = start_stalled_run(server, tmp_path, "-w", "2")
    for pid in [proc.pid, *workers_of(proc.pid)]:
        os.kill(pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    rows = read_manifest(out / MANIFEST)
    assert_cut_off(rows, done)
    assert_tidy(out, rows)
    assert not list(out.rglob(".bulkfetch-*.part"))
