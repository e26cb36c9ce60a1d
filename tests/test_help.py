"""The CLI explains itself: --version, -h, a usage line, the list syntax, exit codes, examples."""

from __future__ import annotations

import re

from bulkfetch import __version__
from tests.helpers import run_cli


def test_version_in_both_spellings() -> None:
    for flag in ("--version", "-V"):
        proc = run_cli(flag)
        assert proc.returncode == 0 and proc.stdout == f"bulkfetch {__version__}\n"


def test_help_in_both_spellings_says_what_a_new_user_needs() -> None:
    short, long = run_cli("-h"), run_cli("--help")
    assert short.returncode == long.returncode == 0 and short.stdout == long.stdout
    text = long.stdout
    assert text.startswith("Usage: bulkfetch [OPTIONS] SOURCE...\n")
    assert "sha256:HEX" in text and "NAME" in text  # the list syntax
    assert "Exit codes: 0 all ok; 1 some URL failed; 2 usage error" in text
    assert text.count("  bulkfetch ") >= 3  # examples
    assert "--install-completion" in text  # shell completion, typer's


def test_metavars_say_what_a_value_is() -> None:
    text = run_cli("--help").stdout
    assert not re.search(r"<(int|float|path|str)[^>]*>", text), "a metavar typer made up"
    for option, metavar in [("--concurrency", "N"), ("--timeout", "SECONDS"),
                            ("--max-bytes", "SIZE"), ("--cacert", "FILE"), ("--proxy", "URL"),
                            ("--out", "DIR"), ("--summary-json", "FILE")]:
        assert re.search(rf"{option} {metavar}\b", text), option


def test_report_has_its_own_help() -> None:
    proc = run_cli("report", "-h")
    assert proc.returncode == 0 and "Usage: bulkfetch report [OPTIONS] OUT" in proc.stdout
