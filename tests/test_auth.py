"""Credentials: sent where they belong, never to another host, never printed."""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path

import pytest

from tests.helpers import fetch_cli, run_cli, write_list
from tests.server import Server

SECRET = "s3cr3t-Pa55"


def everything_written(tmp_path: Path, stderr: str) -> str:
    """All that a run showed or wrote: stderr and every file, the state database included."""
    texts = [stderr]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode(errors="replace"))
    return "\n".join(texts)


def test_basic_auth_is_sent_and_dropped_on_a_redirect_elsewhere(
    server: Server, tmp_path: Path
) -> None:
    """127.0.0.1 and localhost are two origins: the second must not see the credentials."""
    elsewhere = f"http://localhost:{server.port}/headers"
    here, away = server.url("/headers"), server.url(f"/go?to={urllib.parse.quote(elsewhere)}")
    proc = run_cli(str(write_list(tmp_path / "u", [here, away])), "-o", str(tmp_path / "out"),
                   "--user", f"alice:{SECRET}", "-v")
    assert proc.returncode == 0, proc.stderr
    expected = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    by_host: dict[str, list[str | None]] = {}
    for headers in server.stats.headers:
        host = headers["Host"].split(":")[0]
        by_host.setdefault(host, []).append(headers.get("Authorization"))
    assert by_host["127.0.0.1"] == [expected, expected]  # /headers and /go
    assert by_host["localhost"] == [None]
    assert SECRET not in proc.stderr


def test_url_passwords_are_masked_everywhere(server: Server, tmp_path: Path) -> None:
    secret_url = f"http://bob:{SECRET}@127.0.0.1:{server.port}/status/403"
    proc, rows = fetch_cli(tmp_path, [secret_url], "-v",
                           "--summary-json", str(tmp_path / "summary.json"))
    assert proc.returncode == 1
    assert SECRET not in everything_written(tmp_path / "out", proc.stderr)
    (row,) = rows.values()
    assert row["url"] == f"http://bob:***@127.0.0.1:{server.port}/status/403"
    assert "bob:***@" in proc.stderr


def test_user_and_authorization_header_conflict(tmp_path: Path) -> None:
    proc = run_cli(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])),
                   "--user", "a:b", "-H", "Authorization: Bearer x")
    assert proc.returncode == 2 and "do not go together" in proc.stderr


def test_header_credentials_stay_on_their_origin_and_unprinted(
    server: Server, tmp_path: Path
) -> None:
    elsewhere = f"http://localhost:{server.port}/headers"
    away = server.url(f"/go?to={urllib.parse.quote(elsewhere)}")
    proc = run_cli(str(write_list(tmp_path / "u", [away, server.url("/status/401")])),
                   "-o", str(tmp_path / "out"), "-H", f"Authorization: Bearer {SECRET}",
                   "-H", f"Proxy-Authorization: Basic {SECRET}", "-v",
                   "--summary-json", str(tmp_path / "out" / "summary.json"))
    assert proc.returncode == 1
    for headers in server.stats.headers:
        host = headers["Host"].split(":")[0]
        assert ("Authorization" in headers) is (host == "127.0.0.1")
        assert ("Proxy-Authorization" in headers) is (host == "127.0.0.1")
    assert SECRET not in everything_written(tmp_path / "out", proc.stderr)


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_one_kind_of_credentials_per_request(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials in the URL beside --user, -H Authorization or --netrc, and a Location
    that carries credentials (a hostile server's): one kind goes, the run never crashes
    (aiohttp's 'Cannot combine AUTH argument...' ended the run before). The URL's own win
    over --user and .netrc; an Authorization header from -H wins over all."""
    port = server.port
    in_url = f"http://url-user:p%C3%A4ss@127.0.0.1:{port}/headers"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login carol password n3trc\n")
    monkeypatch.setenv("NETRC", str(netrc))  # the CLI's environment is a copy of ours
    cases = [
        ([in_url], ["-u", "cli:pw"], basic_auth("url-user", "päss")),
        ([in_url], ["-H", "Authorization: Bearer T"], "Bearer T"),
        ([server.url("/headers")], ["--netrc", "-H", "Authorization: Bearer N"], "Bearer N"),
        ([server.url("/go?to=" + urllib.parse.quote(f"http://x:y@127.0.0.1:{port}/headers"))],
         ["-u", "cli:pw"], basic_auth("x", "y")),
    ]
    for i, (urls, args, expected) in enumerate(cases):
        server.reset()
        (tmp_path / str(i)).mkdir()
        proc, rows = fetch_cli(tmp_path / str(i), urls, *args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert server.stats.headers[-1].get("Authorization") == expected, args
        assert "p%C3%A4ss" not in proc.stderr and "päss" not in str(rows)
