"""Rates and host-wide pauses, measured at a real server (the pure frontier: test_frontier)."""

from __future__ import annotations

import itertools
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import fetch_cli, run_cli, write_list
from tests.server import Server


def request_times(server: Server, host_prefix: str = "") -> list[float]:
    return [t for t, host, _ in server.stats.times if host.startswith(host_prefix)]


def test_measured_rate_is_within_ten_percent(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{10 + i}") for i in range(31)]
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "--rate", "20")
    assert proc.returncode == 0, proc.stderr
    times = request_times(server)
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 18 <= rate <= 22


def test_host_rate_applies_to_each_host(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{10 + i}") for i in range(16)]
    urls += [f"http://localhost:{server.port}/bytes/{10 + i}" for i in range(16)]
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "--host-rate", "10")
    assert proc.returncode == 0, proc.stderr
    for prefix in ("127.0.0.1", "localhost"):
        times = request_times(server, prefix)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert 0.09 <= statistics.median(gaps) <= 0.11
        assert 9 <= (len(times) - 1) / (times[-1] - times[0]) <= 11


def test_retry_after_pauses_the_whole_host(server: Server, tmp_path: Path) -> None:
    """After a 429 with Retry-After: 1, no request reaches that host for a second."""
    first = server.url("/flaky/pause-test/1/429?retry_after=1")
    others = [server.url(f"/bytes/{10 + i}?delay=0.05") for i in range(6)]
    proc, rows = fetch_cli(tmp_path, [first, *others], "-c", "2")
    assert proc.returncode == 0, proc.stderr
    hit = next(t for t, _, path in server.stats.times if path.startswith("/flaky/"))
    later = [t for t, _, _ in server.stats.times if t > hit + 0.2]
    assert later and min(later) >= hit + 0.95
    assert len(rows) == 7


def test_a_host_asking_to_wait_too_long_is_given_up_at_once(
    server: Server, tmp_path: Path
) -> None:
    """Retry-After: 600 beyond --max-retry-after: that host's URLs fail now, saying so, and
    the other host's run on; the run does not wait (5:18 for 30 URLs before)."""
    slow = [server.url_on("127.0.0.2", f"/flaky/too-long-{i}/5/429?retry_after=600")
            for i in range(5)]
    fine = [server.url(f"/bytes/{20 + i}") for i in range(10)]
    started = time.monotonic()
    proc, rows = fetch_cli(tmp_path, [*slow, *fine], "-c", "1", "--max-retry-after", "60")
    assert time.monotonic() - started < 20
    assert proc.returncode == 1, proc.stderr
    assert all(rows[url]["status"] == "ok" for url in fine)
    for url in slow:
        assert rows[url]["status"] == "failed"
        assert "asked to wait 600s (Retry-After), more than --max-retry-after 60s" in (
            rows[url]["error"])
    assert sum(path.startswith("/flaky/too-long") for path in server.stats.paths) == 1


def test_a_paused_host_is_named_with_the_time_left(server: Server, tmp_path: Path) -> None:
    first = server.url("/flaky/named-pause/1/429?retry_after=2")
    proc, _ = fetch_cli(tmp_path, [first, server.url("/bytes/33")], "-c", "1", "--no-progress",
                        "--status-interval", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert f"paused: 127.0.0.1:{server.port} (" in proc.stderr and "s left)" in proc.stderr


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A listening socket whose accept queue is full: new connections hang in SYN-SENT."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(listener.getsockname())
        fillers.append(s)
    time.sleep(0.1)
    yield listener.getsockname()[1]
    for s in [*fillers, listener]:
        s.close()


def test_connect_timeout_names_itself(unanswered_port: int, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{unanswered_port}/x"
    proc, rows = fetch_cli(tmp_path, [url], "--connect-timeout", "0.5", "--retries", "0",
                           timeout=30)
    assert proc.returncode == 1
    row = rows[url]
    assert row["error"].startswith("connect timed out after 0.5s (--connect-timeout)")
