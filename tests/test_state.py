"""The state between runs holds no password: keyed by a digest of the URL as listed, the URL
beside it masked; a state of an older bulkfetch (keyed by the URL itself) is migrated."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from bulkfetch.store.layout import url_key
from tests.helpers import MANIFEST, read_manifest, run_cli, write_list
from tests.server import Server
from tests.test_batch import served

SECRET = "st8te-pa55word"
STATE = Path(".bulkfetch") / "state.sqlite"


def with_password(url: str) -> str:
    return url.replace("http://", f"http://dora:{SECRET}@", 1)


def state_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (out / ".bulkfetch").glob("state.sqlite*"))


def test_the_state_is_keyed_by_digest_and_masked(server: Server, tmp_path: Path) -> None:
    """`strings state.sqlite` finds no password; the next run still revalidates by it."""
    urls = [with_password(u) for u in served(server, 3)]
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", urls)
    assert run_cli(str(src), "-o", str(out)).returncode == 0
    assert SECRET.encode() not in state_bytes(out)
    with contextlib.closing(sqlite3.connect(out / STATE)) as db:
        rows = dict(db.execute("SELECT key, url FROM saved"))
    assert rows == {url_key(u): u.replace(SECRET, "***") for u in urls}
    server.reset()
    assert run_cli(str(src), "-o", str(out)).returncode == 0
    assert {row["status"] for row in read_manifest(out / MANIFEST).values()} == {"not_modified"}


def old_state(path: Path, rows: list[tuple[str, str, int, str]]) -> None:
    """A state as bulkfetch 0.1 wrote it: the URL, password and all, as the key."""
    path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE urls (url TEXT PRIMARY KEY, path TEXT NOT NULL, bytes INTEGER "
                   "NOT NULL, sha256 TEXT NOT NULL, etag TEXT, last_modified TEXT, fetched_at "
                   "REAL NOT NULL) WITHOUT ROWID")
        with db:
            db.executemany("INSERT INTO urls VALUES (?, ?, ?, ?, NULL, NULL, 0)", rows)


def test_an_older_state_is_migrated_and_forgets_its_passwords(
    server: Server, tmp_path: Path
) -> None:
    """A first run writes the state the old way (simulated); the next run keeps what it knew
    (its files are skipped with --skip-existing) and no page of the old table survives."""
    urls = [with_password(u) for u in served(server, 4)]
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", urls)
    assert run_cli(str(src), "-o", str(out)).returncode == 0
    first = read_manifest(out / MANIFEST)
    for suffix in ("", "-wal", "-shm"):
        (out / f"{STATE}{suffix}").unlink(missing_ok=True)
    rows = [first[u.replace(SECRET, "***")] for u in urls]
    old_state(out / "old" / "state.sqlite", [
        (u, str(row["path"]), int(row["bytes"]), str(row["sha256"]))
        for u, row in zip(urls, rows, strict=True)])
    (out / "old" / "state.sqlite").replace(out / STATE)
    (out / "old").rmdir()
    assert SECRET.encode() in state_bytes(out)  # the old state did hold it
    server.reset()
    again = run_cli(str(src), "-o", str(out), "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in read_manifest(out / MANIFEST).values()} == {"skipped"}
    assert server.stats.statuses == []
    assert SECRET.encode() not in state_bytes(out)
    with contextlib.closing(sqlite3.connect(out / STATE)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "urls" not in tables
