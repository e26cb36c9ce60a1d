"""Names resolved by c-ares on the loop (aiodns), against a real DNS server on 127.0.0.53
(--dns-servers): answers kept for the run, /etc/hosts first, today's words for a name that does
not exist, a server that fails, and one that never answers (with a timeout of its own)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dns_server import DnsServer, Zone
from tests.helpers import fetch_cli
from tests.server import Server


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer(Zone(names={"files.test": "127.0.0.1", "xn--bcher-kva.test": "127.0.0.2"},
                            servfail={"broken.test"}, silent={"quiet.test"})).start()
    try:
        yield server
    finally:
        server.stop()


def test_names_resolve_once_each_for_the_run(
    server: Server, dns: DnsServer, tmp_path: Path
) -> None:
    """Ten URLs on one name: one lookup (A and AAAA), not one per connection; an IDNA name
    asked in its ASCII form; /etc/hosts' localhost never asked of the server."""
    port = server.port
    urls = [f"http://files.test:{port}/bytes/{500 + n}" for n in range(10)]
    urls += [f"http://bücher.test:{port}/bytes/42", f"http://localhost:{port}/bytes/43"]
    proc, rows = fetch_cli(tmp_path, urls, "--dns-servers", dns.address, "-w", "1", "-c", "2")
    assert proc.returncode == 0, proc.stderr
    assert all(row["status"] == "ok" for row in rows.values())
    assert 1 <= dns.zone.asked.count("files.test") <= 2
    assert "xn--bcher-kva.test" in dns.zone.asked and "localhost" not in dns.zone.asked


def test_names_that_fail_keep_their_words(
    server: Server, dns: DnsServer, tmp_path: Path
) -> None:
    port = server.port
    gone, broken, quiet = (f"http://{name}:{port}/x" for name in
                           ("nope.test", "broken.test", "quiet.test"))
    started = time.monotonic()
    proc, rows = fetch_cli(tmp_path, [gone, broken, quiet], "--dns-servers", dns.address,
                           "--retries", "0")
    assert proc.returncode == 1
    assert rows[gone]["error"].startswith(f"cannot connect to nope.test:{port}: name not resolved")
    assert rows[broken]["error"].startswith(f"cannot connect to broken.test:{port}: name not "
                                            "resolved")
    assert rows[quiet]["error"].startswith(
        f"cannot connect to quiet.test:{port}: name not resolved (the resolver did not answer "
        "in time)")
    assert time.monotonic() - started < 20  # 3 s a try, 2 tries: never the default 20 s+


def test_an_ipv6_literal(server: Server, tmp_path: Path) -> None:
    if not server.ipv6:
        pytest.skip("no IPv6 loopback here")
    url = f"http://[::1]:{server.port}/bytes/61"
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 0, proc.stderr
    assert rows[url]["bytes"] == 61 and rows[url]["path"].startswith("--1_")


@pytest.mark.parametrize("bad", ["files.test", "127.0.0.1:99999", "[::1]:0", "1.2.3.4.5"])
def test_dns_servers_must_be_addresses(tmp_path: Path, bad: str) -> None:
    proc, _ = fetch_cli(tmp_path, ["http://127.0.0.1:9/"], "--dns-servers", bad)
    assert proc.returncode == 2 and "expected IP or IP:PORT" in proc.stderr
