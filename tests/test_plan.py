"""Planning is pure: table tests for URL checks, automatic paths and NAMEs."""

from __future__ import annotations

import pytest

from bulkfetch.lists.plan import Planner, Rejected, Repeat, auto_path, check_name, digest, parse_url
from bulkfetch.models import Job, UrlLine


@pytest.mark.parametrize(("text", "ok"), [
    ("http://a/b", True),
    ("https://a.example:8443/x?y#z", True),
    ("HTTP://A/", True),              # scheme and host are case-insensitive
    ("ftp://a/b", False),
    ("http://", False),                # no host
    ("http:///path", False),
    ("/relative/path", False),
    ("a.example/x", False),            # no scheme
    ("http://[::1/", False),           # broken IPv6 literal
    ("mailto:x@y", False),
])
def test_parse_url(text: str, ok: bool) -> None:
    assert (parse_url(text) is not None) is ok


def path_of(text: str) -> str:
    url = parse_url(text)
    assert url is not None
    return auto_path(url, digest(text))


@pytest.mark.parametrize(("url", "prefix", "suffix"), [
    ("http://a.example/file.txt", "a.example/file-", ".txt"),
    ("http://a.example:8080/x", "a.example_8080/x-", ""),
    ("http://a.example:80/x", "a.example/x-", ""),              # default port is not named
    ("http://a.example/", "a.example/index-", ""),
    ("http://a.example/dir/", "a.example/dir-", ""),             # trailing slash: last segment
    ("http://a.example/caf%C3%A9.html", "a.example/café-", ".html"),
    ("http://a.example/a%2F..%2Fb", "a.example/a_.._b-", ""),  # encoded slashes stay inside
    ("http://a.example/..", "a.example/index-", ""),
    ("http://a.example/.env", "a.example/env-", ""),             # no hidden files
    ("http://[::1]:9/x", "--1_9/x-", ""),
    ("http://a.example/x.tar.gz", "a.example/x.tar-", ".gz"),
    ("http://a.example/x.verylongextension", "a.example/x.verylongextension-", ""),
    ("http://a.example/invoice%E2%80%AEfdp.exe", "a.example/invoice_fdp-", ".exe"),  # bidi
    ("http://a.example/a%C2%9Bb", "a.example/a_b-", ""),  # C1: a raw CSI
    ("http://a.example/a%E2%80%8Bb", "a.example/a_b-", ""),  # zero-width space
    ("http://a.example/a%07b", "a.example/a_b-", ""),  # C0, as before
])
def test_auto_path(url: str, prefix: str, suffix: str) -> None:
    path = path_of(url)
    assert path.startswith(prefix) and path.endswith(suffix)
    assert len(path) == len(prefix) + 16 + len(suffix)


def test_auto_path_is_bounded_for_long_segments() -> None:
    """A 300-character (or of 300 three-byte characters) segment still makes a valid file name."""
    for segment in ("a" * 300, "é" * 300):
        leaf = path_of(f"http://h/{segment}.txt").split("/")[-1]
        assert len(leaf.encode()) <= 255


def test_auto_path_differs_for_urls_that_differ_only_in_query_or_case() -> None:
    urls = ["http://h/x", "http://h/X", "http://h/x?a=1", "http://h/x?a=2", "http://h/x/"]
    assert len({path_of(u).lower() for u in urls}) == len(urls)


@pytest.mark.parametrize(("name", "expected"), [
    ("a.txt", "a.txt"),
    ("dir/a.txt", "dir/a.txt"),
    ("dir/../b.txt", "b.txt"),
    ("./x/./y", "x/y"),
    ("with space.txt", "with space.txt"),
])
def test_check_name_accepts(name: str, expected: str) -> None:
    assert check_name(name) == expected


@pytest.mark.parametrize(("name", "reason"), [
    ("../x", "leaves --out"),
    ("a/../../x", "leaves --out"),
    ("/etc/passwd", "absolute"),
    ("dir/", "folder"),
    (".", "leaves --out"),
    ("a\\b", "backslash"),
    ("a\x00b", "NUL"),
    (".bulkfetch/state", ".bulkfetch"),
    ("x" * 256, "longer than 255"),
])
def test_check_name_refuses(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_name(name)


def test_planner_dedupes_and_keeps_the_first_line() -> None:
    planner = Planner()
    first = planner.plan(UrlLine("u:1", "http://h/x", None))
    assert isinstance(first, Job)
    assert planner.plan(UrlLine("u:2", "http://h/x", None)) is None
    assert isinstance(planner.plan(UrlLine("u:3", "http://h/x", "other")), Repeat)  # said once
    assert isinstance(planner.plan(UrlLine("u:4", "http://h/x?", None)), Job)


def test_planner_refuses_clashing_names() -> None:
    planner = Planner(reserved=frozenset({"run.jsonl"}))
    assert isinstance(planner.plan(UrlLine("u:1", "http://h/1", "a/b")), Job)
    outcomes = {
        n: planner.plan(UrlLine(f"u:{n}", f"http://h/{n}", name))
        for n, name in [(2, "a/b"), (3, "a"), (4, "a/b/c"), (5, "run.jsonl"), (6, "a/c")]
    }
    assert isinstance(outcomes[6], Job)
    for n in (2, 3, 4, 5):
        rejected = outcomes[n]
        assert isinstance(rejected, Rejected) and rejected.error.startswith(f"u:{n}: NAME ")


def test_a_repeat_that_asks_for_something_else_is_reported_once() -> None:
    planner = Planner()
    first = UrlLine("u:1", "http://h/a", "a.bin")
    assert isinstance(planner.plan(first), Job)
    assert planner.plan(UrlLine("u:2", "http://h/a", "a.bin")) is None  # the same: silent
    repeat = planner.plan(UrlLine("u:3", "http://h/a", "other.bin"))
    assert isinstance(repeat, Repeat) and repeat.where == "u:3"
    assert "the first line wins" in repeat.message()
    assert planner.plan(UrlLine("u:4", "http://h/a", "third.bin")) is None  # once per URL
    assert planner.plan(UrlLine("u:5", "http://h/b", None)) is not None
    assert planner.plan(UrlLine("u:6", "http://h/b", None)) is None  # plain twice: silent
    assert isinstance(planner.plan(UrlLine("u:7", "http://h/b", "named.bin")), Repeat)
    assert isinstance(planner.plan(UrlLine("u:8", "http://h/a2", "x.bin", "ab" * 32)), Job)
    assert isinstance(planner.plan(UrlLine("u:9", "http://h/a2", "x.bin", "cd" * 32)), Repeat)
    assert isinstance(planner.plan(UrlLine("u:10", "http://h/c", "c.bin")), Job)
    assert isinstance(planner.plan(UrlLine("u:11", "http://h/c", None)), Repeat)  # NAME dropped
