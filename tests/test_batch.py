"""Unattended runs: re-runs over the same --out, locking, and configuration from the environment."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import (
    MANIFEST,
    assert_tidy,
    bulkfetch_cmd,
    cli_env,
    read_manifest,
    run_cli,
    wait_for,
    write_list,
)
from tests.server import Server


def served(server: Server, count: int, size: int = 3000) -> list[str]:
    """`count` files under the server's static root; returns their URLs."""
    folder = server.root / uuid.uuid4().hex[:8]
    folder.mkdir()
    urls = []
    for i in range(count):
        (folder / f"f{i}.bin").write_bytes(os.urandom(size))
        urls.append(server.url(f"/static/{folder.name}/f{i}.bin"))
    return urls


def local(server: Server, url: str) -> Path:
    return server.root / url.split("/static/", 1)[1]


def fetch(tmp_path: Path, urls: list[str], *args: str) -> dict[str, dict[str, object]]:
    proc = run_cli(str(write_list(tmp_path / "urls.txt", urls)), "-o", str(tmp_path / "out"),
                   *args)
    assert proc.returncode in (0, 1), proc.stderr
    return read_manifest(tmp_path / "out" / MANIFEST)


def test_unchanged_rerun_is_all_not_modified(server: Server, tmp_path: Path) -> None:
    """The second run asks conditionally, gets 304s, writes no body byte, touches no file."""
    urls = served(server, 30)
    first = fetch(tmp_path, urls)
    assert all(row["status"] == "ok" for row in first.values())
    inodes = {u: os.stat(tmp_path / "out" / str(r["path"])).st_ino for u, r in first.items()}
    server.reset()
    second = fetch(tmp_path, urls)
    assert server.stats.statuses == [304] * 30
    assert all(h.get("If-None-Match") and h.get("If-Modified-Since")
               for h in server.stats.headers)
    for url, row in second.items():
        assert (row["status"], row["received"], row["http_status"]) == ("not_modified", 0, 304)
        # The line describes the file on disk, so the latest manifest describes the dataset.
        assert [row[k] for k in ("path", "bytes", "sha256")] == [
            first[url][k] for k in ("path", "bytes", "sha256")]
        assert os.stat(tmp_path / "out" / str(row["path"])).st_ino == inodes[url]
    assert_tidy(tmp_path / "out", second)


def test_changed_deleted_and_altered_files(server: Server, tmp_path: Path) -> None:
    """A changed resource is replaced; a file deleted or altered by hand is fetched again."""
    changed, deleted, altered, same = urls = served(server, 4)
    first = fetch(tmp_path, urls)
    time.sleep(0.01)
    local(server, changed).write_bytes(b"new content")
    (tmp_path / "out" / str(first[deleted]["path"])).unlink()
    (tmp_path / "out" / str(first[altered]["path"])).write_bytes(b"edited by hand")
    server.reset()
    second = fetch(tmp_path, urls)
    assert second[changed]["status"] == "ok" and second[changed]["bytes"] == len(b"new content")
    assert (tmp_path / "out" / str(second[changed]["path"])).read_bytes() == b"new content"
    for url in (deleted, altered):
        assert second[url]["status"] == "ok" and second[url]["sha256"] == first[url]["sha256"]
    assert second[same]["status"] == "not_modified"
    sent = dict(zip(server.stats.paths, server.stats.headers, strict=True))
    assert "If-None-Match" not in sent[deleted[len(server.base):]]
    assert_tidy(tmp_path / "out", second)


def test_skip_existing_sends_no_request(server: Server, tmp_path: Path) -> None:
    urls = served(server, 10)
    fetch(tmp_path, urls)
    server.reset()
    rows = fetch(tmp_path, [*urls, server.url("/bytes/5")], "--skip-existing")
    assert server.stats.paths == ["/bytes/5"]
    assert all(rows[u]["status"] == "skipped" and rows[u]["path"] for u in urls)


def test_force_fetches_everything_unconditionally(server: Server, tmp_path: Path) -> None:
    urls = served(server, 5)
    fetch(tmp_path, urls)
    server.reset()
    rows = fetch(tmp_path, urls, "--force")
    assert server.stats.statuses == [200] * 5
    assert not any("If-None-Match" in h for h in server.stats.headers)
    assert all(row["status"] == "ok" for row in rows.values())


def test_a_failure_keeps_the_earlier_file(server: Server, tmp_path: Path) -> None:
    """A URL that now fails leaves last run's file in place, and the manifest names it."""
    (url,) = served(server, 1)
    first = fetch(tmp_path, [url])
    local(server, url).unlink()
    second = fetch(tmp_path, [url])
    assert second[url]["status"] == "failed" and second[url]["http_status"] == 404
    assert second[url]["path"] == first[url]["path"]
    assert (tmp_path / "out" / str(first[url]["path"])).exists()


def test_second_concurrent_run_is_refused(server: Server, tmp_path: Path) -> None:
    """While one run holds --out, another exits at once with code 75 and touches nothing."""
    out = tmp_path / "out"
    first = subprocess.Popen(
        bulkfetch_cmd(str(write_list(tmp_path / "a", [server.url("/stall/30")])), "-o", str(out)),
        stderr=subprocess.PIPE, env=cli_env(),
    )
    try:
        wait_for(lambda: server.stats.count("/stall/30") == 1)
        began = time.monotonic()
        second = run_cli(str(write_list(tmp_path / "b", [server.url("/bytes/1")])), "-o", str(out))
        assert time.monotonic() - began < 5
        assert second.returncode == 75
        assert f"another bulkfetch run (pid {first.pid}) is using {out}" in second.stderr
        assert server.stats.count("/bytes/1") == 0
    finally:
        first.terminate()
        first.communicate(timeout=10)
    assert first.returncode == 143


def test_options_from_the_environment_and_flags_win(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{100 + i}?delay=0.02") for i in range(40)]
    src = str(write_list(tmp_path / "u", urls))
    env = {**cli_env(), "BULKFETCH_CONCURRENCY": "1", "BULKFETCH_OUT": str(tmp_path / "env-out"),
           "BULKFETCH_HEADER": "X-One: a b\nX-Two: c", "BULKFETCH_QUIET": "1"}
    proc = subprocess.run(bulkfetch_cmd(src), env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert server.stats.max_in_flight == 1
    assert len(read_manifest(tmp_path / "env-out" / MANIFEST)) == 40
    assert server.stats.headers[0]["X-One"] == "a b" and server.stats.headers[0]["X-Two"] == "c"
    server.reset()
    proc = subprocess.run(bulkfetch_cmd(src, "-c", "4", "-o", str(tmp_path / "flag-out")),
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert server.stats.max_in_flight == 4
    assert (tmp_path / "flag-out" / MANIFEST).exists()


@pytest.mark.parametrize("flags", [["--skip-existing", "--force"]])
def test_conflicting_refetch_flags(tmp_path: Path, flags: list[str]) -> None:
    proc = run_cli(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])), *flags)
    assert proc.returncode == 2 and "do not go together" in proc.stderr
