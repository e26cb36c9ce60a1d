from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server


@pytest.fixture(scope="session")
def _server() -> Iterator[Server]:
    server = Server().start()
    yield server
    server.stop()


@pytest.fixture
def server(_server: Server) -> Server:
    _server.reset()
    return _server


def bulkfetch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-W", "error::ResourceWarning", "-m", "bulkfetch", *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "error::ResourceWarning"
    env.pop("NO_COLOR", None)
    return env


def run_cli(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        bulkfetch_cmd(*args), input=stdin, capture_output=True, text=True, timeout=timeout,
        env=cli_env(),
    )
    for marker in ("Unclosed", "ResourceWarning", "Traceback"):
        assert marker not in proc.stderr, proc.stderr
    return proc


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path
