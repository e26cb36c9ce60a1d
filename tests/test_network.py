"""Network controls: per-host limit, timeouts by kind, redirect limit, User-Agent."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.helpers import MANIFEST, assert_tidy, fetch_cli, read_manifest, run_cli, write_list
from tests.server import SECRET, Server, body


def test_per_host_limit_is_counted_at_the_server(server: Server, tmp_path: Path) -> None:
    """Two hosts (127.0.0.1 and localhost), --per-host 2: two each, four together."""
    urls = [server.url(f"/bytes/{100 + i}?delay=0.02") for i in range(40)]
    urls += [f"http://localhost:{server.port}/bytes/{100 + i}?delay=0.02" for i in range(40)]
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "-c", "10", "--per-host", "2")
    assert proc.returncode == 0, proc.stderr
    assert server.stats.host_max_in_flight == {"127.0.0.1": 2, "localhost": 2}
    assert server.stats.max_in_flight == 4


def test_read_timeout_names_itself(server: Server, tmp_path: Path) -> None:
    url = server.url("/stall/30")
    proc, rows = fetch_cli(tmp_path, [url], "--read-timeout", "0.5", "--retries", "0", timeout=20)
    assert proc.returncode == 1
    row = rows[url]
    assert row["error"] == "no data for 0.5s (--read-timeout) (gave up after 1 attempt)"


def test_a_slow_steady_body_is_not_a_dead_one(server: Server, tmp_path: Path) -> None:
    """3 s of steady trickle passes a 1 s read timeout: only silence counts."""
    url = server.url(f"/ranged/slow?size={3 * 256 * 1024}&rate={256 * 1024}")  # 0.25 s gaps
    proc = run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "out"),
                   "--read-timeout", "1", "--timeout", "30", timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_max_redirects(server: Server, tmp_path: Path) -> None:
    ok, too_far = server.url("/redirect/2"), server.url("/redirect/3")
    proc, rows = fetch_cli(tmp_path, [ok, too_far], "--max-redirects", "2")
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


def test_max_bytes_with_and_without_content_length(server: Server, tmp_path: Path) -> None:
    """A body over --max-bytes fails at once (announced) or as soon as it passes the limit."""
    announced = server.url("/big/3000000")
    chunked = server.url("/chunked/3000000")
    small = server.url("/bytes/1000")
    proc, rows = fetch_cli(tmp_path, [announced, chunked, small], "--max-bytes", "1M")
    assert proc.returncode == 1
    assert rows[announced]["error"] == "the body is 3,000,000 bytes; --max-bytes is 1,048,576"
    assert rows[chunked]["error"].startswith("more than 1,048,576 bytes arrived")
    assert rows[announced]["attempts"] == rows[chunked]["attempts"] == 1
    assert rows[small]["status"] == "ok"
    assert_tidy(tmp_path / "out", rows)


def test_sha256_column(server: Server, tmp_path: Path) -> None:
    """A third column sha256:HEX is checked; a mismatch fails and publishes nothing."""
    good, bad = server.url("/bytes/500"), server.url("/bytes/600")
    right = hashlib.sha256(body("/bytes/500", 500)).hexdigest()
    lines = [f"{good}\tnamed.bin\tsha256:{right.upper()}", f"{bad} sha256:{'0' * 64}",
             f"{server.url('/bytes/7')} sha256:xyz"]
    proc, rows = fetch_cli(tmp_path, lines)
    assert proc.returncode == 1
    assert rows[good]["status"] == "ok" and rows[good]["path"] == "named.bin"
    assert rows[bad]["error"].startswith("sha256 mismatch: got ")
    assert rows[bad]["attempts"] == 1 and rows[bad]["path"] is None
    assert "not a sha256" in rows[server.url("/bytes/7")]["error"]
    assert_tidy(tmp_path / "out", rows)


def test_a_big_header_is_taken_and_an_oversized_one_fails_without_its_value(
    server: Server, tmp_path: Path
) -> None:
    """A 9 kB Set-Cookie (over aiohttp's 8 KiB) is a normal answer; past 64 KiB the error says
    the header was oversized: no invented status, and the value is shown nowhere."""
    fits, too_big = server.url("/big-header/9000"), server.url("/big-header/70000")
    out = tmp_path / "out"
    proc = run_cli(str(write_list(tmp_path / "u", [fits, too_big])), "-o", str(out), "-v")
    assert proc.returncode == 1
    rows = read_manifest(out / MANIFEST)
    assert rows[fits]["status"] == "ok"
    assert rows[too_big]["http_status"] is None and rows[too_big]["attempts"] == 1
    assert rows[too_big]["error"] == "the server sent an oversized header (over 64 KiB)"
    assert SECRET not in proc.stderr and SECRET not in (out / MANIFEST).read_text()
