"""The README's commands work when pasted: the cron line under cron's minimal environment."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.helpers import write_list
from tests.server import Server

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_cron_line_runs_under_crons_minimal_environment(
    server: Server, tmp_path: Path
) -> None:
    match = re.search(r"^15 3 \* \* \*\s+(cd /srv/mirror .*)$", README, re.MULTILINE)
    assert match is not None
    mirror = tmp_path / "mirror"
    (mirror / "lists").mkdir(parents=True)
    (mirror / "logs").mkdir()
    (mirror / ".venv").symlink_to(ROOT / ".venv")
    write_list(mirror / "lists" / "a.txt", [server.url("/bytes/10"), server.url("/bytes/11")])
    command = match[1].replace("/srv/mirror", str(mirror))
    proc = subprocess.run(["sh", "-c", command], env={"PATH": "/usr/bin:/bin", "HOME": "/"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (mirror / "logs" / "bulkfetch.log").read_text()
    assert " bulkfetch: 2 ok, 0 failed" in log
    assert (mirror / "data" / "last-run.json").exists()

