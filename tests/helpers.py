from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

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
        if row["status"] == "ok":
            data = (out / row["path"]).read_bytes()
            assert len(data) == row["bytes"]
            assert hashlib.sha256(data).hexdigest() == row["sha256"]
        else:
            assert row["sha256"] is None
            if row["status"] in ("not_modified", "skipped"):
                assert row["path"] is not None
