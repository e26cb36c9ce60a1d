"""List syntax: lines in, entries out."""

from __future__ import annotations

import pytest

from bulkfetch.lists.syntax import parse_line
from bulkfetch.models import UrlLine


@pytest.mark.parametrize(("raw", "expected"), [
    (b"http://a/b", ("http://a/b", None)),
    (b"  http://a/b  \r", ("http://a/b", None)),            # CRLF files and stray blanks
    (b"http://a/b\tout/name.bin", ("http://a/b", "out/name.bin")),
    (b"http://a/b   two words.txt ", ("http://a/b", "two words.txt")),
    (b"\xef\xbb\xbfhttp://a/b", ("http://a/b", None)),       # a UTF-8 byte order mark
    (b"http://a/\xff", ("http://a/\udcff", None)),  # kept as the byte: plan refuses it
])
def test_entries(raw: bytes, expected: tuple[str, str | None]) -> None:
    assert parse_line(raw, source="u.txt", lineno=1) == UrlLine("u.txt:1", *expected)


@pytest.mark.parametrize("raw", [b"", b"   ", b"# comment", b"   # indented comment", b"\t"])
def test_ignored(raw: bytes) -> None:
    assert parse_line(raw, source="u.txt", lineno=3) is None


@pytest.mark.parametrize(("raw", "name", "checksum"), [
    (b"http://a sha256:ABCD", None, "ABCD"),
    (b"http://a\tout/x.bin\tsha256:ab", "out/x.bin", "ab"),
    (b"http://a two words.txt sha256:ab", "two words.txt", "ab"),
    (b"http://a sha256-looking-name", "sha256-looking-name", None),  # not the prefix
])
def test_checksum_column(raw: bytes, name: str | None, checksum: str | None) -> None:
    line = parse_line(raw, source="u", lineno=2)
    assert line is not None and (line.name, line.sha256) == (name, checksum)


def test_where_names_source_and_line() -> None:
    line = parse_line(b"http://x", source="-", lineno=42)
    assert line is not None and line.where == "-:42"
