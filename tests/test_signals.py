"""SIGTERM and SIGINT stop a run within seconds, with a valid manifest and no partial files."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import (
    MANIFEST,
    assert_cut_off,
    assert_tidy,
    bulkfetch_cmd,
    cli_env,
    read_manifest,
    start_stalled_run,
    wait_for,
)
from tests.server import Server


@pytest.mark.parametrize(("signum", "code"), [
    (signal.SIGTERM, 143), (signal.SIGINT, 130),
    (signal.SIGHUP, 129),  # the terminal closed, the ssh session dropped: as SIGTERM
])
def test_signal_stops_cleanly(
    server: Server, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """Finished URLs stay in the manifest; in-flight ones leave no file and no temp file, and
    their lines say what had arrived; the state is closed (no WAL left)."""
    proc, out, done = start_stalled_run(server, tmp_path)
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        # Past the parent's own wait for its workers (10 s, then SIGKILL): a stop that takes
        # too long fails below with what the run said, not with a process left behind.
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    took = time.monotonic() - sent
    assert took < 10, f"stopped after {took:.1f} s: {stderr}"
    assert proc.returncode == code, stderr
    assert f"interrupted by {signum.name}" in stderr and "Traceback" not in stderr
    rows = read_manifest(out / MANIFEST)
    assert_cut_off(rows, done)
    assert_tidy(out, rows)
    assert not list(out.rglob("*.part"))
    for url in set(rows) - set(done):  # each stalled after 600 KiB of a 200
        assert rows[url]["http_status"] == 200 and rows[url]["received"] >= 600 * 1024
    assert not list(out.rglob("state.sqlite-wal"))


def test_sigterm_while_stdin_stays_open(server: Server, tmp_path: Path) -> None:
    """A list piped from a writer that never finishes does not keep bulkfetch alive."""
    proc = subprocess.Popen(
        bulkfetch_cmd("-", "-o", str(tmp_path / "out")),
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
    )
    assert proc.stdin is not None
    proc.stdin.write(f"{server.url('/bytes/5')}\n".encode())
    proc.stdin.flush()
    wait_for(lambda: server.stats.count("/bytes/5") == 1)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    finally:
        proc.stdin.close()
    assert proc.returncode == 143
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    proc.stderr.close()


def test_an_ignored_sighup_stays_ignored(server: Server, tmp_path: Path) -> None:
    """Under `nohup` the terminal's hang-up does not stop the run."""
    urls = [server.url(f"/stall/1?before=100&i={i}") for i in range(3)]
    src = tmp_path / "u"
    src.write_text("".join(f"{u}\n" for u in urls))
    proc = subprocess.Popen(
        bulkfetch_cmd(str(src), "-o", str(tmp_path / "out")), stderr=subprocess.PIPE,
        env=cli_env(), preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for(lambda: server.stats.count("/stall/1") == 3)
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert {row["status"] for row in rows.values()} == {"ok"}
