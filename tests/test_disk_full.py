"""A full disk mid-run (a small tmpfs mounted for the test; root only): bodies that cannot be
written fail in words, a manifest or state that cannot be written stops the run in one line
with exit 1, never exit 70; nothing published is short; with room again, the next run
completes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import MANIFEST, read_manifest, run_cli, write_list
from tests.server import Server, body

SIZE_KIB = 2048


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_KIB}k", "tmpfs",
                              str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def whole_files_only(out: Path, server: Server) -> None:
    """Every body file on the disk is whole (its bytes are the origin's), no temp file."""
    for path in out.rglob("*"):
        if path.is_file() and ".bulkfetch" not in path.relative_to(out).parts:
            assert not path.name.endswith(".part"), path
            size = int(path.name.split("-")[0])
            assert path.read_bytes() == body(f"/bytes/{size}", size), path


def test_a_full_disk_is_words_and_the_next_run_completes(
    small_disk: Path, server: Server, tmp_path: Path
) -> None:
    urls = [server.url(f"/bytes/{20_000 + i}") for i in range(40)]  # 800 kB
    out = small_disk / "out"
    src = write_list(tmp_path / "u", urls)
    ballast = small_disk / "ballast"  # leaves about 500 KiB
    ballast.write_bytes(b"\0" * 1536 * 1024)
    proc = run_cli(str(src), "-o", str(out), "-c", "4", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "no space left on device" in proc.stderr
    whole_files_only(out, server)
    if (out / MANIFEST).exists():  # what the manifest says ok is whole on disk
        for row in read_manifest(out / MANIFEST).values():
            if row["status"] == "ok":
                data = (out / row["path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == row["sha256"]
    ballast.unlink()  # room again
    again = run_cli(str(src), "-o", str(out), "-c", "4", timeout=120)
    assert again.returncode == 0, again.stderr
    rows = read_manifest(out / MANIFEST)
    assert set(rows) == set(urls)
    assert {row["status"] for row in rows.values()} <= {"ok", "not_modified"}
    for row in rows.values():  # the state claimed only whole files: each is as listed
        data = (out / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
    whole_files_only(out, server)
