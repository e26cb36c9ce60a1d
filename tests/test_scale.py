"""Memory stays flat with body size and list length (peak RSS read from the kernel)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import MANIFEST, bulkfetch_cmd, cli_env, read_manifest, wait_for, write_list
from tests.server import Server

RSS_LIMIT_MB = 100
# A million distinct URLs: 42 MB of interpreter and libraries, the digest table (32 MB at a
# million) and, while it doubles, its old half beside it. Measured 92-103 MB peak.
MILLION_URLS_RSS_LIMIT_MB = 112


def run_measured(args: list[str], *, stop_after: float | None = None,
                 started: object = None) -> tuple[int, float, str]:
    """Run the CLI; returns exit code, peak RSS in MB, and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.peak", *bulkfetch_cmd(*args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env())
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    if stop_after is not None:
        if started is not None:
            wait_for(started, timeout=5)
        time.sleep(stop_after)
        os.kill(pid, signal.SIGTERM)
    out, stderr = proc.communicate(timeout=120)
    code, peak_kib = (int(word) for word in out.split())
    return code, peak_kib / 1024, stderr


def test_memory_does_not_grow_with_body_size(server: Server, tmp_path: Path) -> None:
    """A 50 MB body costs no more memory than a 1 MB one: it streams to disk."""
    peaks = []
    for size in (1 << 20, 50 << 20):
        src = write_list(tmp_path / f"u{size}", [server.url(f"/big/{size}")])
        code, peak, stderr = run_measured([str(src), "-o", str(tmp_path / "out")])
        assert code == 0, stderr
        peaks.append(peak)
    assert peaks[1] < RSS_LIMIT_MB
    assert peaks[1] - peaks[0] < 10, peaks


@pytest.mark.slow
def test_a_million_lines_start_at_once_in_bounded_memory(
    server: Server, tmp_path: Path
) -> None:
    """Fetching starts within seconds of a 1,000,000-line list and RSS stays under 100 MB."""
    src = tmp_path / "million.txt"
    with src.open("w") as f:
        f.writelines(f"{server.base}/m/{i}\n" for i in range(1_000_000))
    began = time.monotonic()
    code, peak, stderr = run_measured(
        [str(src), "-o", str(tmp_path / "out"), "-c", "20"],
        stop_after=3, started=lambda: len(server.stats.paths) > 0,
    )
    assert code == 143, stderr
    assert peak < RSS_LIMIT_MB
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    statuses = [row["status"] for row in rows.values()]
    assert len(rows) > 100 and set(statuses) <= {"ok", "interrupted"}
    assert statuses.count("interrupted") <= 20  # at most what was in flight at -c 20
    assert time.monotonic() - began < 15


@pytest.mark.slow
def test_a_million_distinct_lines_fit_the_dedupe_set(tmp_path: Path) -> None:
    """All of a 1,000,000-line list goes through planning and the manifest in bounded memory.

    Every line is rejected (not http), so the whole list is read without a network wait.
    """
    src = tmp_path / "million.txt"
    with src.open("w") as f:
        f.writelines(f"ftp://example/{i}\n" for i in range(1_000_000))
    code, peak, stderr = run_measured([str(src), "-o", str(tmp_path / "out"), "-q"])
    assert code == 1, stderr
    assert peak < MILLION_URLS_RSS_LIMIT_MB
    with (tmp_path / "out" / MANIFEST).open("rb") as f:
        assert sum(1 for _ in f) == 1_000_000
    assert "1,000,000 failed" in stderr
