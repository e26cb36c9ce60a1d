"""`bulkfetch verify OUT`: every file the state says is whole, hashed again and compared; every
other file under OUT named.

The state (`saved`) is the list of what runs finished, whole (a row is written only once its
file is in place), so it is what a dataset is checked against; the latest manifest says the
same of the run it describes. Memory stays bounded: the state is read a row at a time, and
the set of known paths lives in a temporary SQLite file, not in a Python set. Files are opened
from OUT's descriptor with O_NOFOLLOW at every step: a link planted in OUT is reported, never
followed. The run's lock (and each shard's) is held meanwhile, so no run changes OUT under it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import sqlite3
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bulkfetch.errors import LockedOut, UsageError
from bulkfetch.show.outgoing import lossless
from bulkfetch.store import lock
from bulkfetch.store.folder import NoRun, NotFollowed, open_folder, open_plain, run_homes
from bulkfetch.store.layout import SHARDS_DIR, STATE_DIR, Layout, missing_shards
from bulkfetch.store.state import manifest_of, read_only

READ_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # "missing", "changed" or "unexpected"
    path: str  # under OUT
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    checked: int  # files the state names
    bytes: int  # of those, hashed
    missing: int
    changed: int
    unexpected: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unexpected)


class Verifier:
    """Findings as they are found (`run`), then the Verdict."""

    def __init__(self, out: Path) -> None:
        if str(out).startswith("s3:"):
            raise UsageError(
                "verify reads a folder. In a bucket, each object carries the sha256 its run "
                "computed (x-amz-meta-sha256, or the tag sha256 for a multipart one) and the "
                "manifest has it too; S3 itself checks the bytes it stores, so compare those "
                "(aws s3api head-object) or copy the objects down and verify the folder")
        self._out = out
        try:
            self._homes = run_homes(out)
        except NoRun as exc:
            raise UsageError(str(exc)) from exc
        except OSError as exc:
            raise UsageError(f"{str(out)!r}: {exc.strerror or exc}") from exc
        self.progress: Callable[[int], None] = lambda nbytes: None  # each block hashed
        self._counts = {"missing": 0, "changed": 0, "unexpected": 0}
        self.checked = 0
        self.hashed = 0

    def states(self) -> list[Path]:
        return [Layout(home).state for home in self._homes if Layout(home).state.is_file()]

    def total_bytes(self) -> int:
        """What the states say there is to hash (for a progress bar)."""
        total = 0
        for path in self.states():
            with contextlib.closing(_open_state(path)) as db:
                total += db.execute("SELECT COALESCE(SUM(bytes), 0) FROM saved").fetchone()[0]
        return int(total)

    def run(self) -> Iterator[Finding]:
        with contextlib.ExitStack() as stack:
            for home in self._homes:
                try:
                    stack.enter_context(lock.hold(Layout(home).lock))
                except lock.Locked as exc:
                    raise LockedOut(f"{exc}; verify once it is over") from exc
            root = os.open(self._out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            stack.callback(os.close, root)
            known = stack.enter_context(contextlib.closing(sqlite3.connect("")))
            known.execute("CREATE TABLE known (path TEXT PRIMARY KEY) WITHOUT ROWID")
            for name in missing_shards(self._homes):  # its files cannot be checked
                yield self._found("missing", f"{STATE_DIR}/{SHARDS_DIR}/{name}/",
                                  "a shard of the run left nothing here")
            for state in self.states():
                yield from self._check_state(state, root, known)
            yield from self._unexpected(known)

    def _own(self, db: sqlite3.Connection, known: sqlite3.Connection) -> None:
        """The last run's manifest, when it was put inside OUT (--manifest), is no stranger."""
        manifest = manifest_of(db)
        if manifest is not None:
            with contextlib.suppress(ValueError):
                inside = Path(manifest).relative_to(self._out.resolve()).as_posix()
                with known:
                    known.execute("INSERT OR IGNORE INTO known VALUES (?)", (inside,))

    def verdict(self) -> Verdict:
        c = self._counts
        return Verdict(self.checked, self.hashed, c["missing"], c["changed"], c["unexpected"])

    def _found(self, kind: str, path: str, detail: str) -> Finding:
        self._counts[kind] += 1
        return Finding(kind, path, detail)

    def _check_state(self, state: Path, root: int,
                     known: sqlite3.Connection) -> Iterator[Finding]:
        with contextlib.closing(_open_state(state)) as db:
            self._own(db, known)
            # A path saved for several URLs (a NAME given to another URL later): the newest.
            rows = db.execute("SELECT path, bytes, sha256 FROM saved "
                              "ORDER BY path, fetched_at DESC")
            last = None
            for path, size, sha256 in rows:
                if path == last:
                    continue
                last = path
                with known:
                    known.execute("INSERT OR IGNORE INTO known VALUES (?)", (path,))
                self.checked += 1
                if (problem := self._check_file(root, path, size, sha256)) is not None:
                    yield self._found(*problem)

    def _check_file(self, root: int, path: str, size: int,
                    sha256: str) -> tuple[str, str, str] | None:
        if not _inside(path):  # a state someone wrote by hand: nothing outside OUT is read
            return ("changed", lossless(path), "the state names a path outside OUT; not read")
        folder, _, name = path.rpartition("/")
        try:
            dir_fd = open_folder(root, folder, create=False)
        except FileNotFoundError:
            return ("missing", path, "not there")
        except OSError as exc:
            return ("changed", path, str(exc.strerror or exc))
        try:
            fd = open_plain(name, os.O_RDONLY, dir_fd)
        except FileNotFoundError:
            return ("missing", path, "not there")
        except NotFollowed as exc:
            return ("changed", path, str(exc.strerror or exc))
        except OSError as exc:
            return ("changed", path, f"cannot read: {exc.strerror or exc}")
        finally:
            os.close(dir_fd)
        with contextlib.closing(os.fdopen(fd, "rb", buffering=0)) as f:
            on_disk = os.fstat(fd).st_size
            if on_disk != size:
                return ("changed", path, f"size {on_disk:,}, the state says {size:,} bytes")
            digest = hashlib.sha256()
            while block := f.read(READ_BYTES):
                digest.update(block)
                self.hashed += len(block)
                self.progress(len(block))
        if digest.hexdigest() != sha256:
            return ("changed", path, f"sha256 {digest.hexdigest()}, the state says {sha256}")
        return None

    def _unexpected(self, known: sqlite3.Connection) -> Iterator[Finding]:
        """Every file under OUT (not under .bulkfetch/) that no state names."""
        for folder, dirs, files in os.walk(self._out):
            rel = os.path.relpath(folder, self._out)
            if rel == ".":
                rel = ""
                with contextlib.suppress(ValueError):
                    dirs.remove(STATE_DIR)
            dirs.sort()
            for name in sorted(files) + [d for d in dirs if _is_link(folder, d)]:
                path = f"{rel}/{name}" if rel else name
                shown = lossless(path)  # a name that is not UTF-8 is in no state
                if shown == path and known.execute(
                        "SELECT 1 FROM known WHERE path = ?", (path,)).fetchone():
                    continue
                kind = "a symlink" if _is_link(folder, name) else "not in the state"
                yield self._found("unexpected", shown, kind)


def _inside(path: str) -> bool:
    parts = path.split("/")
    return (bool(path) and not path.startswith("/") and posixpath.normpath(path) == path
            and ".." not in parts and parts[0] != STATE_DIR)


def _is_link(folder: str, name: str) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISLNK(os.lstat(os.path.join(folder, name)).st_mode)
    return False


def _open_state(path: Path) -> sqlite3.Connection:
    try:
        return read_only(path)
    except sqlite3.Error as exc:
        raise UsageError(f"{str(path)!r}: cannot read the state: {exc}") from exc
