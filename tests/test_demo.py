"""scripts/demo, the README's first command, works even when its port is taken, and shows an
incremental second run."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.helpers import MANIFEST, read_manifest

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_runs_on_a_free_port_when_8765_is_taken(tmp_path: Path) -> None:
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 8765))
            holder.listen(1)  # taken by "someone else", who never answers
        except OSError:
            pass  # someone else holds it already: the case under test
        proc = subprocess.run([str(ROOT / "scripts" / "demo"), "-q", "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        holder.close()
    assert proc.returncode == 0, proc.stderr
    assert "port 8765 is taken" in proc.stderr and "Traceback" not in proc.stderr
    (first,) = (tmp_path / ".bulkfetch" / "runs").iterdir()
    rows = read_manifest(first)
    assert len(rows) == 43 and {row["status"] for row in rows.values()} == {"ok"}
    assert all(":8765/" not in url for url in rows)
    # The second run: the demo server's ETags make it an incremental one.
    again = read_manifest(tmp_path / MANIFEST)
    assert sorted(again) == sorted(rows)
    assert {row["status"] for row in again.values()} == {"not_modified"}
    assert "nothing is fetched twice" in proc.stderr
