"""What can be checked of the container recipe without a Docker engine, and bulkfetch as PID 1
would run it: started alone in its own session, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.helpers import (
    MANIFEST,
    assert_cut_off,
    assert_tidy,
    bulkfetch_cmd,
    cli_env,
    read_manifest,
    wait_for,
    write_list,
)
from tests.server import Server

DOCKERFILE = Path(__file__).parent.parent / "Dockerfile"


def final_stage() -> list[str]:
    text = DOCKERFILE.read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    return [line.strip() for line in ("FROM " + stages[-1]).splitlines() if line.strip()]


def test_dockerfile_final_stage_is_slim_non_root_and_exec_form() -> None:
    lines = final_stage()
    assert re.match(r"FROM python:3\.\d+-slim$", lines[0])
    assert "WORKDIR /data" in lines
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1] not in ("root", "0")
    entry = next(line for line in lines if line.startswith("ENTRYPOINT "))
    assert json.loads(entry.removeprefix("ENTRYPOINT ")) == ["bulkfetch"]
    # Build tools stay in the build stage: the final stage installs nothing itself.
    assert not any(re.search(r"pip install|apt-get|gcc|build-essential", line) for line in lines)


def test_sigterm_as_pid_1_in_a_container(server: Server, tmp_path: Path) -> None:
    """As `docker stop` does: SIGTERM to a process alone in its session; it ends in time."""
    done = [server.url(f"/bytes/{i + 1}") for i in range(20)]
    src = write_list(tmp_path / "urls.txt", [*done, server.url("/stall/60")])
    proc = subprocess.Popen(
        bulkfetch_cmd(str(src), "-o", str(tmp_path / "out")), env=cli_env(),
        start_new_session=True, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    wait_for(lambda: server.stats.count("/stall/60") == 1)
    wait_for(lambda: len((tmp_path / "out" / MANIFEST).read_bytes().splitlines()) == 20)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - began < 10
    assert proc.returncode == 143, stderr
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert_cut_off(rows, done)
    assert_tidy(tmp_path / "out", rows)
    # The state is complete too: every finished URL has its row.
    state = tmp_path / "out" / ".bulkfetch" / "state.sqlite"
    with contextlib.closing(sqlite3.connect(state)) as db:
        saved = {url for (url,) in db.execute("SELECT url FROM saved")}
    assert saved == set(done)
