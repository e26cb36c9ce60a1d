"""The host-aware engine at a real server reached as several hosts (loopback addresses),
with one process and with workers: every host busy, every limit exact."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import assert_tidy, fetch_cli, run_cli, write_list
from tests.server import OTHER_HOSTS, Server

HOSTS = ("127.0.0.1", *OTHER_HOSTS)
WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


@WORKERS
def test_a_host_sorted_list_keeps_every_host_busy(
    server: Server, tmp_path: Path, workers: str
) -> None:
    """-c 8 --per-host 2 over four hosts listed one after another: all four at once."""
    urls = [server.url_on(h, f"/bytes/{100 + i}?delay=0.1") for h in HOSTS for i in range(10)]
    proc, rows = fetch_cli(tmp_path, urls, "-c", "8", "--per-host", "2", "-w", workers)
    assert proc.returncode == 0, proc.stderr
    stats = server.stats
    assert stats.max_hosts_in_flight == 4
    assert stats.max_in_flight == 8
    assert max(stats.host_max_in_flight.values()) == 2
    assert_tidy(tmp_path / "out", rows)


@WORKERS
def test_a_429_pauses_its_host_while_the_others_are_served(
    server: Server, tmp_path: Path, workers: str
) -> None:
    """Retry-After: 1 from host A: nothing reaches A for a second; B is served meanwhile.
    (--per-host 1: no other request to A is already under way when the 429 arrives.)"""
    a, b = HOSTS[:2]
    first = server.url_on(a, "/flaky/pause/1/429?retry_after=1")
    urls = [first] + [server.url_on(a, f"/bytes/{10 + i}") for i in range(5)]
    urls += [server.url_on(b, f"/bytes/{10 + i}?delay=0.1") for i in range(30)]
    proc, rows = fetch_cli(tmp_path, urls, "-c", "4", "--per-host", "1", "-w", workers)
    assert proc.returncode == 0, proc.stderr
    times = server.stats.times
    hit = next(t for t, _, path in times if path.startswith("/flaky/"))
    on_a = [t for t, host, _ in times if host.startswith(a) and t > hit]
    assert on_a and min(on_a) >= hit + 0.95
    on_b = [t for t, host, _ in times if host.startswith(b) and hit < t < hit + 0.9]
    assert len(on_b) >= 7  # 0.1 s answers, one at a time: B was served all through A's pause
    assert len(rows) == len(urls)


@WORKERS
def test_per_host_limit_holds_with_workers(server: Server, tmp_path: Path, workers: str) -> None:
    urls = [server.url_on(h, f"/bytes/{100 + i}?delay=0.05") for h in HOSTS[:2] for i in range(30)]
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "-c", "20", "--per-host", "3", "-w", workers)
    assert proc.returncode == 0, proc.stderr
    assert max(server.stats.host_max_in_flight.values()) == 3


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_host_fails_its_urls_at_once(server: Server, tmp_path: Path) -> None:
    """Connection refused three times in a row: the host's other URLs fail without attempts,
    and another host's URLs are not touched by it."""
    port = closed_port()
    dead = [f"http://127.0.0.1:{port}/{i}" for i in range(30)]
    alive = [server.url(f"/bytes/{10 + i}") for i in range(10)]
    proc, rows = fetch_cli(tmp_path, dead + alive, "-c", "2", "--host-errors", "3",
                           "--retries", "3")
    assert proc.returncode == 1
    attempts = sum(rows[url]["attempts"] for url in dead)
    assert attempts <= 6  # 3 in a row, plus what was already under way; not 30 x 4
    given_up = [url for url in dead if "--host-errors 3" in rows[url]["error"]]
    assert len(given_up) >= 28
    assert all(rows[url]["status"] == "ok" for url in alive)
    assert Counter(row["status"] for row in rows.values()) == {"failed": 30, "ok": 10}


def test_a_full_window_names_the_hosts_it_waits_on(server: Server, tmp_path: Path) -> None:
    """--window 5 filled with a paused host's entries: the status lines say which host, and
    the run still completes once the pause ends."""
    a, b = HOSTS[:2]
    urls = [server.url_on(a, "/flaky/window/1/429?retry_after=2")]
    urls += [server.url_on(a, f"/bytes/{10 + i}") for i in range(7)]
    urls += [server.url_on(b, f"/bytes/{10 + i}") for i in range(4)]
    proc, rows = fetch_cli(tmp_path, urls, "-c", "1", "--window", "5", "--no-progress",
                           "--status-interval", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert f"window full, waiting on {a}:{server.port} (" in proc.stderr
    assert "paused" in proc.stderr
    assert len(rows) == len(urls)
