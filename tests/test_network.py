"""Network controls: per-host limit, timeouts by kind, redirect limit, User-Agent."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli, write_list
from tests.helpers import MANIFEST, read_manifest
from tests.server import Server


def test_per_host_limit_is_counted_at_the_server(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{100 + i}?delay=0.02") for i in range(60)]
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "-c", "10", "--per-host", "2")
    assert proc.returncode == 0, proc.stderr
    assert server.stats.max_in_flight == 2


def test_read_timeout_names_itself(server: Server, tmp_path: Path) -> None:
    url = server.url("/stall/30")
    proc = run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "out"),
                   "--read-timeout", "0.5", "--retries", "0", timeout=20)
    assert proc.returncode == 1
    row = read_manifest(tmp_path / "out" / MANIFEST)[url]
    assert row["error"] == "no data for 0.5s (--read-timeout) (gave up after 1 attempts)"


def test_a_slow_steady_body_is_not_a_dead_one(server: Server, tmp_path: Path) -> None:
    """3 s of steady trickle passes a 1 s read timeout: only silence counts."""
    url = server.url(f"/ranged/slow?size={3 * 64 * 1024}&rate={64 * 1024}")
    proc = run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "out"),
                   "--read-timeout", "1", "--timeout", "30", timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_max_redirects(server: Server, tmp_path: Path) -> None:
    ok, too_far = server.url("/redirect/2"), server.url("/redirect/3")
    proc = run_cli(str(write_list(tmp_path / "u", [ok, too_far])), "-o", str(tmp_path / "out"),
                   "--max-redirects", "2")
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert proc.returncode == 1
    assert rows[ok]["status"] == "ok"
    assert rows[too_far]["error"] == "too many redirects (more than 2; a loop?)"


def test_user_agent(server: Server, tmp_path: Path) -> None:
    url = server.url("/headers")
    run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "a"))
    assert server.stats.headers[-1]["User-Agent"].startswith("bulkfetch/")
    run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "b"),
            "--user-agent", "archiver/2 (ops@example.com)")
    assert server.stats.headers[-1]["User-Agent"] == "archiver/2 (ops@example.com)"
