"""The soak: thousands of URLs from a fault-injecting origin (503s, a few 429s with
Retry-After, resets before the headers, bodies cut short, bodies stalled past --read-timeout)
and big resumable bodies; the run killed again and again (SIGKILL and SIGTERM of the whole
process group) and started again; at the end every body on disk is checked, byte for byte,
against the origin's."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import MANIFEST, bulkfetch_cmd, cli_env, read_manifest, write_list
from tests.server import Server, body, fault_kind

SMALL = 3000
BIG = 4
BIG_BYTES = 6 * 1024 * 1024
ARGS = ("-c", "32", "--retries", "6", "--read-timeout", "1", "--timeout", "30", "-q")


def interrupt(cmd: list[str], signum: signal.Signals, after_s: float) -> int:
    """Start the CLI in a process group of its own; signal the whole group after a while."""
    proc = subprocess.Popen(cmd, start_new_session=True, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(after_s)
    if proc.poll() is None:
        os.killpg(proc.pid, signum)
    _, stderr = proc.communicate(timeout=60)
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
    return proc.returncode


@pytest.mark.slow
def test_killed_again_and_again_then_every_byte_is_the_origins(
    server: Server, tmp_path: Path
) -> None:
    small = {server.url(f"/fault/soak-{i}?size={1000 + (i * 37) % 60_000}"): i
             for i in range(SMALL)}
    big = {server.url(f"/ranged/soak-big-{i}?size={BIG_BYTES}&rate={3 * 1024 * 1024}"): i
           for i in range(BIG)}
    assert len({fault_kind(f"soak-{i}") for i in range(SMALL)}) == 6  # every fault is met
    src = write_list(tmp_path / "u", [*big, *small])
    out = tmp_path / "out"
    cmd = bulkfetch_cmd(str(src), "-o", str(out), *ARGS)
    codes = [interrupt(cmd, signum, after) for signum, after in (
        (signal.SIGKILL, 1.5), (signal.SIGTERM, 1.5), (signal.SIGKILL, 1.0),
        (signal.SIGTERM, 1.0))]
    assert -signal.SIGKILL in codes and 143 in codes  # the kills did land mid-run
    final = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert final.returncode == 0, final.stderr
    rows = read_manifest(out / MANIFEST)
    assert set(rows) == set(small) | set(big)
    for url, row in rows.items():
        assert row["status"] in ("ok", "not_modified"), row
        data = (out / row["path"]).read_bytes()
        if url in big:
            expected = server.ranged_body(f"soak-big-{big[url]}", BIG_BYTES)
        else:
            path = url.split("127.0.0.1", 1)[1].split(":", 1)[1].split("/", 1)[1]
            expected = body("/" + path.split("?")[0], int(url.rsplit("size=", 1)[1]))
        assert data == expected, url
    assert not list(out.rglob(".bulkfetch-*.part"))
    assert not list((out / ".bulkfetch" / "partial").glob("*"))
    resumed = [h for h in server.stats.headers if h.get("Range")]
    assert resumed  # a big body cut by a kill went on from its partial
