"""The README's commands work when pasted: the cron line under cron's minimal environment, the
Python examples beside a list."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import cli_env, write_list
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



def _python_blocks() -> list[str]:
    start = README.index("### From Python")
    section = README[start:README.index("\n## ", start)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_from_python_examples_run_as_written(server: Server, tmp_path: Path) -> None:
    """Each block of "From Python" (plain, asyncio, a thread, Dask) beside a urls.txt."""
    blocks = _python_blocks()
    assert len(blocks) == 4
    urls = [server.url(f"/bytes/{n}") for n in range(1, 9)]
    for n, block in enumerate(blocks):
        here = tmp_path / f"block{n}"
        here.mkdir()
        write_list(here / "urls.txt", urls)
        (here / "example.py").write_text(block)
        proc = subprocess.run([sys.executable, "-W", "error::ResourceWarning", "example.py"],
                              cwd=here, capture_output=True, text=True, timeout=120,
                              env=cli_env())
        assert proc.returncode == 0, f"block {n}:\n{block}\n{proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stderr
        assert proc.stdout.strip(), block
    assert (tmp_path / "block0" / "out").is_dir()
    assert (tmp_path / "block3" / "out" / ".bulkfetch" / "shards").is_dir()
