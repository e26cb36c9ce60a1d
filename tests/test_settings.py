"""One way in: every value the CLI refuses, the library refuses too, with a UsageError in the
same words; the CLI names the option as a flag, the library as a keyword."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import bulkfetch
from bulkfetch.errors import UsageError
from bulkfetch.models import Refetch, Timeouts, Tls
from bulkfetch.settings import build, cli_name, library_name
from tests.helpers import run_cli, write_list

# (CLI arguments, library keywords, words both must say). Each was taken silently, hung, or
# raised a bare ValueError / ExceptionGroup from the library before.
BAD: list[tuple[list[str], dict[str, Any], str]] = [
    (["-c", "0"], {"concurrency": 0}, "expected a whole number from 1 to 10,000"),
    (["-c", "-3"], {"concurrency": -3}, "expected a whole number from 1 to 10,000"),
    (["--per-host", "-1"], {"per_host": -1}, "expected a whole number from 0 to 10,000"),
    (["--retries", "-1"], {"retries": -1}, "expected a whole number from 0 to 100"),
    (["--window", "0"], {"window": 0}, "expected a whole number from 1 to 100,000,000"),
    (["--max-redirects", "-1"], {"max_redirects": -1}, "expected a whole number from 0 to 100"),
    (["--host-errors", "-1"], {"host_errors": -1}, "from 0 to 1,000,000"),
    (["--host-rate", "-1"], {"host_rate": -1}, "expected a number more than 0"),
    (["--rate", "0"], {"rate": 0}, "expected a number more than 0"),
    (["--timeout", "0"], {"timeout": 0}, "expected a number more than 0"),
    (["--read-timeout", "-2"], {"timeouts": Timeouts(read_s=-2)}, "expected a number more than 0"),
    (["--max-bytes", "10X"], {"max_bytes": "10X"}, "expected a size such as 500k, 10M or 2G"),
    (["--max-bytes", "10X"], {"max_bytes": -5}, "expected a size such as 500k, 10M or 2G"),
    (["-u", "nocolon"], {"user": "nocolon"}, "expected USER:PASSWORD"),
    (["-u", "a:b", "-H", "Authorization: x"], {"user": ("a", "b"),
                                               "headers": [("Authorization", "x")]},
     "and an Authorization header do not go together"),
    (["-H", "no colon"], {"headers": ["no colon"]}, "expected 'Name: value'"),
    (["-H", "X: a\x01b"], {"headers": {"X": "a\x01b"}}, "cannot hold control characters"),
    (["--proxy", "ftp://p:1"], {"proxy": "ftp://p:1"}, "expected http://[user:password@]host"),
    (["--key", "k.pem"], {"tls": Tls(key=Path("k.pem"))}, "goes with"),
    (["--skip-existing", "--force"], {"skip_existing": True, "force": True},
     "do not go together"),
    (["--shard", "3/3"], {"shard": (3, 3)}, "is not in 0..2"),
    (["--workers", "0"], {"workers": 0}, "expected a whole number from 1 to 64"),
    (["-H", "@/no/such/file"], {"headers": ["@/no/such/file"]},
     "cannot read: No such file or directory"),
]


@pytest.mark.parametrize(("args", "keywords", "words"), BAD,
                         ids=[" ".join(args) for args, _, _ in BAD])
def test_the_cli_and_the_library_refuse_alike(
    tmp_path: Path, args: list[str], keywords: dict[str, Any], words: str
) -> None:
    src = write_list(tmp_path / "u", ["http://127.0.0.1:9/"])
    proc = run_cli(str(src), "-o", str(tmp_path / "cli"), *args)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("bulkfetch: error: ") and words in line, line
    with pytest.raises(UsageError) as caught:
        bulkfetch.fetch([str(src)], tmp_path / "lib", **keywords)
    assert words in str(caught.value)
    assert not (tmp_path / "lib").exists()  # refused before anything was made


def test_the_library_names_keywords_and_the_cli_names_flags() -> None:
    with pytest.raises(UsageError, match=r"^per_host=-1: expected"):
        build([], "out", {"per_host": -1})
    with pytest.raises(UsageError, match=r"^--per-host -1: expected"):
        build([], "out", {"per_host": -1}, naming=cli_name)


@pytest.mark.parametrize(("keywords", "words"), [
    ({"concurency": 5}, "concurency=5: not an option of bulkfetch"),  # a typo
    ({"concurrency": True}, "expected a whole number"),  # a bool is no count
    ({"concurrency": "8"}, "expected a whole number"),
    ({"refetch": "sometimes"}, "expected revalidate, skip-existing or force"),
    ({"timeouts": 5}, "expected a bulkfetch.Timeouts"),
    ({"headers": "X: y"}, "expected 'Name: value' strings or (name, value) pairs"),
])
def test_library_only_mistakes_are_usage_errors(
    tmp_path: Path, keywords: dict[str, Any], words: str
) -> None:
    with pytest.raises(UsageError) as caught:
        bulkfetch.fetch([], tmp_path / "lib", **keywords)
    assert words in str(caught.value)


def test_headers_from_a_file(tmp_path: Path) -> None:
    """-H @FILE: one header a line, so that a token stays out of argv."""
    (tmp_path / "h").write_text("Authorization: Bearer t0ken\n\nX-A: 1\n")
    got = build([], "out", {"headers": [f"@{tmp_path / 'h'}", "X-B: 2"]}, naming=cli_name)
    assert got.headers == (("Authorization", "Bearer t0ken"), ("X-A", "1"), ("X-B", "2"))


def test_good_values_come_through_both_ways() -> None:
    """The same Settings from the flags' values and from the library's typed ones."""
    from_cli = build(["u"], "out", {"concurrency": 8, "max_bytes": "1k", "user": "a:b",
                                    "headers": ["X-A: 1"], "skip_existing": True,
                                    "timeout": 5.0}, naming=cli_name)
    from_library = build(["u"], "out", {"concurrency": 8, "max_bytes": 1024, "user": ("a", "b"),
                                        "headers": {"X-A": "1"}, "refetch": Refetch.SKIP_EXISTING,
                                        "timeouts": Timeouts(total_s=5.0)})
    assert from_cli == from_library


@pytest.mark.parametrize(("given", "secret"), [
    ({"headers": ["Authorization Bearer TOKEN123"]}, "TOKEN123"),  # a colon forgotten
    ({"headers": ["X-Token: TOKEN123\x01"]}, "TOKEN123"),
    ({"headers": "Authorization: Bearer TOKEN123"}, "TOKEN123"),  # one str, not a list
    ({"proxy": "u:PW123@proxy:8080"}, "PW123"),  # no scheme: no mask would catch it
    ({"user": "nocolonPW123"}, "PW123"),
])
def test_a_refused_value_that_may_be_a_secret_is_not_echoed(
    given: dict[str, Any], secret: str
) -> None:
    for naming in (cli_name, library_name):
        with pytest.raises(UsageError) as caught:
            build([], "out", given, naming=naming)
        assert secret not in str(caught.value), str(caught.value)
