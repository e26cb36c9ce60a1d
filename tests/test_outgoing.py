"""The one way out: every line, cell and record that leaves masks passwords and escapes
control characters, whatever kind of message carries it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bulkfetch.show.outgoing import escape, line, mask
from tests.helpers import MANIFEST, read_manifest, run_cli, write_list
from tests.server import Server

SECRET = "Pa55-never-shown"


@pytest.mark.parametrize(("text", "shown"), [
    ("http://u:pw@h/x", "http://u:***@h/x"),
    ("no URL here", "no URL here"),
    ("https://h/a@b", "https://h/a@b"),  # an "@" in the path is no userinfo
    ("http://token@h/x", "http://token@h/x"),  # a user without a password stays
    # A user name holding "@": the userinfo runs to the last "@" before the path.
    ("http://alice@example.com:S3CRET@h/", "http://alice@example.com:***@h/"),
    ("http://u:a:b@h/", "http://u:***@h/"),  # a ":" in the password
    ("http://carol:p@ssw0rd@h/", "http://carol:***@h/"),  # an "@" in the password
    ("see 'http://a:1@h/x' and https://b:2@g:8080/y?q=1",
     "see 'http://a:***@h/x' and https://b:***@g:8080/y?q=1"),
    ("proxy http://p:pw@proxy:3128 refused", "proxy http://p:***@proxy:3128 refused"),
    ("http://u:pw@h?x=1", "http://u:***@h?x=1"),
    ("expected http://[user:password@]host", "expected http://[user:password@]host"),  # help
])
def test_mask(text: str, shown: str) -> None:
    assert mask(text) == shown


@pytest.mark.parametrize(("text", "shown"), [
    ("plain", "plain"),
    ("\x1b]0;t\x07", "\\x1b]0;t\\x07"),
    ("a\u202eb", "a\\u202eb"),
    ("bad \udcff byte", "bad \\xff byte"),  # surrogateescape: the byte itself
    ("tab\tnew\nline", "tab\\x09new\\x0aline"),
])
def test_escape(text: str, shown: str) -> None:
    assert escape(text) == shown


def test_a_line_is_masked_before_it_is_escaped() -> None:
    """An escape cannot split a URL so that its password slips past the mask."""
    assert line("\x1bhttp://u:pw@h/") == "\\x1bhttp://u:***@h/"


def everything(root: Path) -> bytes:
    """Every byte of every file under `root`: state, WAL, partials, manifests, markers."""
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def secret_list(server: Server, path: Path) -> list[str]:
    """URLs with passwords (one with an "@" in its user name) for every kind of message."""
    base = f"127.0.0.1:{server.port}"
    urls = [
        f"http://bob:{SECRET}@{base}/bytes/100",  # ok, and listed again with a NAME: a repeat
        f"http://alice@example.com:{SECRET}@{base}/status/404",  # a failure
        f"http://carol:{SECRET}@{base}/stall/1?before=1000",  # in flight for status lines
    ]
    write_list(path, [*urls, f"{urls[0]} other-name"])
    return urls


def test_no_message_shows_a_password(server: Server, tmp_path: Path) -> None:
    """Repeat, failure, -v, status lines, the summary and --summary-json in a log; the table and
    its summary on a terminal; a shard's report and its JSON: the password never appears, on
    screen or on disk (the state included)."""
    listed = secret_list(server, tmp_path / "u")
    out = tmp_path / "out"
    plain = run_cli(str(tmp_path / "u"), "-o", str(out), "-v", "--status-interval", "0.2",
                    "--summary-json", str(tmp_path / "summary.json"))
    assert plain.returncode == 1, plain.stderr
    assert "is listed again" in plain.stderr and "failed: " in plain.stderr
    assert "done:" in plain.stderr  # a status line
    assert "alice@example.com:***@" in plain.stderr
    live = run_cli(str(tmp_path / "u"), "-o", str(tmp_path / "shard"), "--progress",
                   "--shard", "0/1", "--force")
    assert "recent failures" in live.stderr or "bulkfetch summary" in live.stderr
    report = run_cli("report", str(tmp_path / "shard"), "--json")
    assert "failed: http://alice@example.com:***@" in report.stderr
    shown = "\n".join(p.stderr + p.stdout for p in (plain, live, report))
    assert SECRET not in shown
    for root in (out, tmp_path / "shard", tmp_path / "summary.json"):
        assert SECRET.encode() not in (everything(root) if root.is_dir() else root.read_bytes())
    rows = read_manifest(out / MANIFEST)
    assert set(rows) == {mask(url) for url in listed}
    assert orjson.loads((tmp_path / "summary.json").read_bytes())["failed"] == 1
