"""--limit-rate: the body bytes of the whole run, over two worker processes, come at the cap
(within 5 %), and every transfer moves meanwhile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkfetch.http.pace import BytePace
from tests.helpers import MANIFEST, read_manifest, run_cli, write_list
from tests.server import Server

MIB = 1024 * 1024


def test_the_cap_holds_over_two_workers(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/big/{6 * MIB}?n={n}") for n in range(4)]  # 24 MiB in all
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "--limit-rate", "6M", "-w", "2", "-c", "4", "--status-interval", "1",
                   "--summary-json", str(tmp_path / "run.json"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "(cap 6.3 MB/s)" in proc.stderr  # the status lines name the cap
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["ok"] == 4 and run["received"] == 24 * MIB
    rate = run["received"] / run["elapsed_s"]
    assert 0.95 * 6 * MIB <= rate <= 1.05 * 6 * MIB, rate / MIB
    # Shared in turn: the four went on together, none waited for the others to finish.
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert all(row["elapsed"] > 0.6 * run["elapsed_s"] for row in rows.values())


def test_transfers_take_turns() -> None:
    """Bookings in order: two readers alternate, neither waits for the other to finish."""
    pace = BytePace(1000.0)
    waits = [pace.book(100, now=10.0) for _ in range(6)]  # 0.1 s of the cap each
    assert waits == pytest.approx([0.0, 0.05, 0.15, 0.25, 0.35, 0.45])
    assert pace.book(100, now=100.0) == 0.0  # a pause earns no credit beyond the burst
