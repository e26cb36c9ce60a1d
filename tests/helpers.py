"""What the tests share: running the real CLI, reading what it wrote, waiting for it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from tests.server import Server

MANIFEST = Path(".bulkfetch") / "manifest.jsonl"


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Manifest rows by URL; fails the test if a URL appears twice or a line is not JSON."""
    rows: dict[str, dict[str, Any]] = {}
    for line in path.read_bytes().splitlines():
        row = orjson.loads(line)
        assert row["url"] not in rows, f"two manifest lines for {row['url']}"
        rows[row["url"]] = row
    return rows


def assert_tidy(out: Path, rows: dict[str, dict[str, Any]]) -> None:
    """--out holds exactly the manifest's files (intact) and bulkfetch's own folder."""
    on_disk = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.relative_to(out).parts[0] != ".bulkfetch"
    }
    named = {row["path"] for row in rows.values() if row["path"] is not None}
    assert on_disk == named
    for row in rows.values():
        if row["status"] in ("ok", "not_modified", "skipped"):  # each names the file on disk
            data = (out / row["path"]).read_bytes()
            assert len(data) == row["bytes"]
            assert hashlib.sha256(data).hexdigest() == row["sha256"]
        else:
            assert row["sha256"] is None


def assert_cut_off(rows: dict[str, dict[str, Any]], done: list[str]) -> None:
    """After a signal: the finished URLs are ok, and every other line is one cut off."""
    assert set(done) <= set(rows)
    assert all(rows[url]["status"] == "ok" for url in done)
    for url in set(rows) - set(done):
        row = rows[url]
        assert (row["status"], row["error"]) == ("interrupted", "interrupted before it finished")
        assert row["path"] is None and row["attempts"] >= 1


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


def start_stalled_run(
    server: Server, tmp_path: Path, *args: str
) -> tuple[subprocess.Popen[str], Path, list[str]]:
    """A run at -c 8 with 10 URLs finished and 4 stalled mid-body (each stalls after 600 KiB,
    so a temp file is on disk while it waits); returns the process, --out and the finished."""
    done = [server.url(f"/bytes/{1000 + i}") for i in range(10)]
    stalled = [server.url(f"/stall/60?before={600 * 1024}&i={i}") for i in range(4)]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        bulkfetch_cmd(str(write_list(tmp_path / "u", done + stalled)), "-o", str(out), "-c", "8",
                      *args),
        stderr=subprocess.PIPE, text=True, env=cli_env(),
    )
    wait_for(lambda: len(list(out.rglob(".bulkfetch-*.part"))) == 4)
    wait_for(lambda: len((out / MANIFEST).read_bytes().splitlines()) == 10)
    return proc, out, done


def wait_for(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def fetch_cli(
    tmp_path: Path, urls: list[str], *args: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """The usual run: `urls` in a list, the real CLI into tmp_path/out, and its manifest's rows
    by URL (none if it wrote no manifest)."""
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"), *args,
                   timeout=timeout)
    manifest = tmp_path / "out" / MANIFEST
    return proc, read_manifest(manifest) if manifest.exists() else {}
