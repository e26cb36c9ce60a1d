"""Per-URL state kept between runs: an SQLite file in OUT/.bulkfetch/, stdlib sqlite3, no server.

What a run learns (path, size, sha256, validators) is saved in batches by the manifest's writer
thread, after the file is in place, so the state never claims a file that is not whole. What a
run needs from earlier runs is looked up on the intake thread, which also checks that the file
is still there with its size: the event loop never waits on either.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bulkfetch.models import Prior, Result, Status, Validators
from bulkfetch.show.outgoing import mask, record
from bulkfetch.store.layout import same_tag, url_key

_QUERY_URLS = 500
SCHEMA_VERSION = 2  # 1: keyed by the URL itself, password and all

# Keyed by a digest of the URL as listed (`layout.url_key`): nothing here holds a password;
# `url` is the URL masked, for people who open the file.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS saved (
    key BLOB PRIMARY KEY,
    url TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    fetched_at REAL NOT NULL
) WITHOUT ROWID
"""
_INSERT = "INSERT OR REPLACE INTO saved VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# What `verify` and `report` need to know of the last run: where its manifest went.
_FACTS = "CREATE TABLE IF NOT EXISTS facts (name TEXT PRIMARY KEY, value TEXT NOT NULL)"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The intake thread reads while the writer thread saves: WAL lets both go on.
    # nofollow: a link planted at its name is refused (SQLite >= 3.31), never written through.
    uri = f"file:{urllib.parse.quote(str(path))}?nofollow=1"
    db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        _migrate(db)
    db.execute(_FACTS)
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a state of an older bulkfetch to this schema, and leave no page of the old table
    behind (VACUUM, then the WAL emptied): its rows held URLs with their passwords."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return  # another connection did it meanwhile
        db.execute(_SCHEMA)
        old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'urls'")
        migrated = old.fetchone() is not None
        if migrated:
            rows = db.execute("SELECT url, path, bytes, sha256, etag, last_modified, fetched_at "
                              "FROM urls")
            db.executemany(_INSERT, ((url_key(url), mask(url), *rest) for url, *rest in rows))
            db.execute("DROP TABLE urls")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if migrated:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class StateReader:
    """Lookups for the intake thread (its own connection; WAL lets it read while we write)."""

    def __init__(self, path: Path, out: Path | None) -> None:
        """`out`: the folder whose files are checked to be still whole; None: a bucket, whose
        objects are taken to be there."""
        self._db = _connect(path)
        self._out = out
        self._empty = self._db.execute("SELECT 1 FROM saved LIMIT 1").fetchone() is None

    def priors(self, jobs: Sequence[tuple[str, str]]) -> dict[str, Prior]:
        """For (url, path) pairs: the saved files that are still whole, by URL.

        One query per block of URLs: a query per URL costs more than the fetch of a small file.
        """
        if self._empty:
            return {}
        found: dict[str, Prior] = {}
        wanted = {url_key(url): (url, path) for url, path in jobs}
        keys = list(wanted)
        for i in range(0, len(keys), _QUERY_URLS):
            block = keys[i : i + _QUERY_URLS]
            rows = self._db.execute(
                "SELECT key, path, bytes, sha256, etag, last_modified FROM saved"
                f" WHERE key IN ({','.join('?' * len(block))})",
                block,
            )
            for key, *fields in rows:
                prior = Prior(*fields)
                url, path = wanted[key]
                # A file renamed by its answer (--content-disposition) is still this URL's.
                same = prior.path == path or same_tag(path, prior.path)
                if same and self._intact(prior):
                    found[url] = prior
        return found

    def _intact(self, prior: Prior) -> bool:
        if self._out is None:
            return True
        try:
            return os.stat(os.path.join(self._out, prior.path)).st_size == prior.bytes
        except OSError:
            return False

    def close(self) -> None:
        self._db.close()


class StateWriter:
    """Saves what finished, a batch per transaction; used by one writer thread at a time."""

    def __init__(self, path: Path, *, manifest: Path | None = None) -> None:
        self._path = path
        self._manifest = manifest
        self._db: sqlite3.Connection | None = None
        self._rows: list[tuple[Any, ...]] = []

    def add(
        self, url: str, result: Result, validators: Validators | None, prior: Prior | None
    ) -> None:
        """Remember an ok or not_modified result (on the loop: a tuple append). `url` is the
        URL as listed: `result.url` has any password masked."""
        if result.status is Status.OK and result.sha256 is not None and result.path is not None:
            v = validators or Validators(None, None)
            self._rows.append((url, result.path, result.bytes, result.sha256,
                               v.etag, v.last_modified, time.time()))
        elif result.status is Status.NOT_MODIFIED and prior is not None:
            v = validators or Validators(prior.etag, prior.last_modified)
            self._rows.append((url, prior.path, prior.bytes, prior.sha256,
                               v.etag or prior.etag, v.last_modified or prior.last_modified,
                               time.time()))

    def take(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def save(self, rows: list[tuple[Any, ...]]) -> None:
        """Thread side: one transaction for the whole batch; each URL keyed by its digest and
        kept masked (here, off the event loop)."""
        if not rows:
            return
        first = self._db is None
        if self._db is None:
            self._db = _connect(self._path)
        with self._db:
            self._db.execute("BEGIN")
            if first and self._manifest is not None:
                self._db.execute("INSERT OR REPLACE INTO facts VALUES ('manifest', ?)",
                                 (str(self._manifest.resolve()),))
            self._db.executemany(_INSERT, ((url_key(url), record(url), *rest)
                                           for url, *rest in rows))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def manifest_of(db: sqlite3.Connection) -> str | None:
    """Where the last run that saved anything wrote its manifest (an absolute path), if the
    state says so (a state of an older bulkfetch does not)."""
    try:
        row = db.execute("SELECT value FROM facts WHERE name = 'manifest'").fetchone()
    except sqlite3.OperationalError:  # no such table
        return None
    return str(row[0]) if row else None


def read_only(path: Path) -> sqlite3.Connection:
    """The state, for reading only (`verify`, `report`), never through a link."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro&nofollow=1"
    db = sqlite3.connect(uri, uri=True, timeout=60)
    db.execute("SELECT 1 FROM saved LIMIT 1")  # raises if it is no state
    return db
