"""The request goes out exactly as listed: escapes are never decoded, on any hop."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from tests.helpers import fetch_cli
from tests.server import Server

AS_LISTED = [
    "/raw/a%3Bb", "/raw/a%2Fb", "/raw/a;b", "/raw/a%2Cb", "/raw/%7Euser", "/raw/a%20b",
    "/raw/a+b", "/raw/caf%C3%A9", "/raw/a%25b", "/raw/a%3bb", "/raw/a%zz",
    "/raw/q?v=a%2Fb", "/raw/q?v=a%3Db%26c", "/raw/q?sig=abc%2B%2F%3D&x=1", "/raw/q?a=1;b=2",
    "/raw/q?%E2%82%AC",
]


def test_the_target_is_sent_as_listed(server: Server, tmp_path: Path) -> None:
    urls = [server.url(target) for target in AS_LISTED]
    proc, rows = fetch_cli(tmp_path, urls)
    assert proc.returncode == 0, proc.stderr
    sent = {target: (tmp_path / "out" / rows[server.url(target)]["path"]).read_text()
            for target in AS_LISTED}
    assert sent == {target: target for target in AS_LISTED}


def test_characters_that_cannot_be_sent_raw_are_escaped_and_nothing_else(
    server: Server, tmp_path: Path
) -> None:
    url = server.url("/raw/café%3B?q=€%2F")
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 0, proc.stderr
    row = rows[url]
    assert (tmp_path / "out" / row["path"]).read_text() == "/raw/caf%C3%A9%3B?q=%E2%82%AC%2F"


def test_a_redirect_target_is_sent_as_its_location_says(server: Server, tmp_path: Path) -> None:
    locations = ["/raw/a%3Bb?v=a%2Fb", "/raw/x%2Fy%3D"]
    urls = [server.url(f"/go?to={urllib.parse.quote(loc, safe='')}") for loc in locations]
    proc, rows = fetch_cli(tmp_path, urls)
    assert proc.returncode == 0, proc.stderr
    for url, location in zip(urls, locations, strict=True):
        assert (tmp_path / "out" / rows[url]["path"]).read_text() == location
