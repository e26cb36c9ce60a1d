"""Cut-off bodies continue where they stopped, with Range + If-Range, or start over safely."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from tests.helpers import (
    MANIFEST,
    assert_tidy,
    bulkfetch_cmd,
    cli_env,
    fetch_cli,
    read_manifest,
    run_cli,
    wait_for,
    write_list,
)
from tests.server import Server

SIZE = 6 * 1024 * 1024


def partials(out: Path) -> list[Path]:
    return sorted((out / ".bulkfetch" / "partial").glob("*.part"))


def ranges_asked(server: Server) -> list[str]:
    return [h["Range"] for h in server.stats.headers if "Range" in h]


def stop_midway(src: Path, out: Path, signum: signal.Signals) -> int:
    """Start a run, stop it with `signum` once 1 MiB is kept; returns the exit code."""
    proc = subprocess.Popen(bulkfetch_cmd(str(src), "-o", str(out)), env=cli_env(),
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: bool(partials(out)) and partials(out)[0].stat().st_size >= 1024 * 1024)
    proc.send_signal(signum)
    return proc.wait(timeout=10)


def fetch_ranged(
    server: Server, tmp_path: Path, query: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], str]:
    """One run over one /ranged/NAME URL (a fresh NAME); its process, manifest line, NAME."""
    name = uuid.uuid4().hex[:8]
    url = server.url(f"/ranged/{name}?size={SIZE}&{query}")
    proc, rows = fetch_cli(tmp_path, [url], *args)
    return proc, rows[url], name


def whole(server: Server, name: str) -> str:
    return hashlib.sha256(server.ranged_body(name, SIZE)).hexdigest()


def test_a_cut_connection_is_continued_in_the_same_run(server: Server, tmp_path: Path) -> None:
    proc, row, name = fetch_ranged(server, tmp_path, f"cut={2 * 1024 * 1024}")
    assert proc.returncode == 0, proc.stderr
    assert row["attempts"] == 2 and row["bytes"] == SIZE and row["sha256"] == whole(server, name)
    (asked,) = ranges_asked(server)
    assert asked.startswith("bytes=") and int(asked[6:-1]) >= 1024 * 1024
    assert server.stats.statuses[-1] == 206
    assert not partials(tmp_path / "out")
    assert_tidy(tmp_path / "out", {row["url"]: row})


def test_sigkill_then_rerun_continues_with_range(server: Server, tmp_path: Path) -> None:
    """A run killed outright leaves its bytes in .bulkfetch/partial; the next run continues."""
    name = uuid.uuid4().hex[:8]
    slow = server.url(f"/ranged/{name}?size={SIZE}&rate={2 * 1024 * 1024}")
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", [slow])
    assert stop_midway(src, out, signal.SIGKILL) == -signal.SIGKILL
    time.sleep(1.5)  # a worker keeps what it received as it stops, within 1 s (test_workers)
    kept = partials(out)[0].stat().st_size
    server.reset()
    # The same URL again (the server ignores `rate` for the check; only the bytes matter).
    proc2 = run_cli(str(src), "-o", str(out))
    assert proc2.returncode == 0, proc2.stderr
    row = read_manifest(out / MANIFEST)[slow]
    assert row["status"] == "ok" and row["bytes"] == SIZE
    assert row["sha256"] == whole(server, name)
    assert ranges_asked(server) == [f"bytes={kept}-"]
    assert server.stats.statuses == [206]
    assert not partials(out)
    assert row["received"] == SIZE - kept  # bytes: what is on disk; received: this run's
    assert "6.3 MB saved, " in proc2.stderr and " received in " in proc2.stderr


def test_a_changed_resource_starts_over(server: Server, tmp_path: Path) -> None:
    """If-Range with the old ETag gets the whole new body, never a splice of two versions."""
    name = uuid.uuid4().hex[:8]
    url = server.url(f"/ranged/{name}?size={SIZE}&rate={2 * 1024 * 1024}")
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", [url])
    assert stop_midway(src, out, signal.SIGTERM) == 143
    assert partials(out)  # SIGTERM keeps the partial too
    server.versions[name] = 2
    server.reset()
    assert run_cli(str(src), "-o", str(out)).returncode == 0
    row = read_manifest(out / MANIFEST)[url]
    assert row["sha256"] == whole(server, name)
    assert len(ranges_asked(server)) == 1 and server.stats.statuses == [200]
    assert not partials(out)


def test_a_capped_range_is_continued_and_never_published_short(
    server: Server, tmp_path: Path
) -> None:
    """A 206 that ends before the body does (a CDN capping ranges) is kept and continued."""
    proc, row, name = fetch_ranged(server, tmp_path,
                                   f"cut={2 * 1024 * 1024}&cap={3 * 1024 * 1024}")
    assert proc.returncode == 0, proc.stderr
    assert row["attempts"] == 3 and row["bytes"] == SIZE and row["sha256"] == whole(server, name)
    assert server.stats.statuses == [200, 206, 206] and len(ranges_asked(server)) == 2


def test_a_capped_range_without_retries_left_fails_and_keeps_its_bytes(
    server: Server, tmp_path: Path
) -> None:
    proc, row, _ = fetch_ranged(server, tmp_path, f"cut={2 * 1024 * 1024}&cap={1024 * 1024}",
                                "--retries", "1")
    out = tmp_path / "out"
    assert proc.returncode == 1
    assert row["status"] == "failed" and "the rest is asked for next" in row["error"]
    assert_tidy(out, {row["url"]: row})  # nothing at the final path
    (kept,) = partials(out)
    assert kept.stat().st_size == int(ranges_asked(server)[0][6:-1]) + 1024 * 1024


def test_a_206_of_another_version_is_never_joined(server: Server, tmp_path: Path) -> None:
    """The server ignores If-Range and sends a range of its new version: start over."""
    name = uuid.uuid4().hex[:8]
    url = server.url(f"/ranged/{name}?size={SIZE}&rate={2 * 1024 * 1024}")
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", [url])
    assert stop_midway(src, out, signal.SIGTERM) == 143
    server.versions[name] = 2
    server.ignore_if_range.add(name)
    server.reset()
    proc = run_cli(str(src), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    row = read_manifest(out / MANIFEST)[url]
    new = server.ranged_body(name, SIZE)
    assert (out / row["path"]).read_bytes() == new
    assert server.stats.statuses == [206, 200] and row["attempts"] == 2


def test_a_weak_etag_is_never_resumed_with_a_date(server: Server, tmp_path: Path) -> None:
    """With a weak ETag, If-Range may carry neither it nor the date: the body starts over."""
    proc, row, _ = fetch_ranged(server, tmp_path, f"cut={2 * 1024 * 1024}&weak")
    assert proc.returncode == 0, proc.stderr
    assert row["attempts"] == 2 and row["bytes"] == SIZE
    assert ranges_asked(server) == [] and server.stats.statuses == [200, 200]
    assert not any("If-Range" in h for h in server.stats.headers)


def test_a_strong_last_modified_alone_resumes(server: Server, tmp_path: Path) -> None:
    proc, row, name = fetch_ranged(server, tmp_path, f"cut={2 * 1024 * 1024}&no_etag")
    assert proc.returncode == 0, proc.stderr
    assert row["sha256"] == whole(server, name)
    (asked,) = [h for h in server.stats.headers if "Range" in h]
    assert asked["If-Range"] == "Sun, 01 Nov 2026 00:00:00 GMT"
