"""Bodies into the --out folder: whole or not at all, and never through a symlink.

A body is written to a temp file beside its final name, then renamed. A body too big to land
in one write, whose answer names a strong validator, is written in OUT/.bulkfetch/partial/
instead (KEY.part, with KEY.json naming the validator and the URL, masked: KEY is the URL's
digest, `layout.url_key`), so that an attempt or a run cut off, even by SIGKILL, can continue
it with Range + If-Range.

OUT may be shared (a group-writable volume): someone else may plant a symlink at any name or
swap a folder for one at any moment. So every folder on a body's path is opened from OUT's
descriptor one part at a time with O_NOFOLLOW (`open_folder`), files are created with
O_EXCL|O_NOFOLLOW relative to their folder's descriptor, and the rename is relative to
descriptors too: no moment exists at which a path is resolved through a link. What is refused
fails the URL in one line ("... is a symlink; not followed").

The event loop never blocks on the disk, and it pays one thread hop per flush (`FLUSH_BYTES`,
more for a big body; one in all for a small body) instead of one per chunk or file operation.
Every thread job runs to its end even when the task is cancelled meanwhile; the cancellation is
delivered after, so a temp file is never left behind and a completed rename is never unreported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import os
import re
import stat
import threading
from pathlib import Path

import orjson

from bulkfetch.models import Resume, SafeRelPath
from bulkfetch.show.outgoing import mask
from bulkfetch.store.jsonfile import write_json
from bulkfetch.store.layout import (
    OWN_FILES,
    PART_SUFFIX,
    PARTIAL_DIR,
    STATE_DIR,
    Layout,
    shard_homes,
    url_key,
)
from bulkfetch.store.sink import Body, ChecksumMismatch, Partial
from bulkfetch.store.threads import Writers, settle, write_all

FLUSH_BYTES = 256 * 1024
TEMP_PREFIX = ".bulkfetch-"
TEMP_SUFFIX = PART_SUFFIX
READ_BYTES = 1 << 20
_temp_ids = itertools.count()  # next() on a count is atomic under the GIL
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | _NOFOLLOW
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _NOFOLLOW


class NotFollowed(OSError):
    """A name under OUT that should be a folder or a plain file is a symlink (or something
    else): bulkfetch does not go through it."""


def open_folder(root_fd: int, rel: str, *, create: bool = True) -> int:
    """A descriptor of the folder `rel` (POSIX, relative) under `root_fd`, each part opened
    from the one before with O_NOFOLLOW and made if missing. The caller closes it."""
    parts = [p for p in rel.split("/") if p]
    if not parts:
        return os.dup(root_fd)
    fd = root_fd  # never closed here: the caller's
    try:
        for part in parts:
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                inner = _open_dir(part, fd, rel)
            except OSError as exc:
                raise _refused(exc, rel, part) from exc
            if fd != root_fd:
                os.close(fd)
            fd = inner
        return fd
    except BaseException:
        if fd != root_fd:
            os.close(fd)
        raise


def _open_dir(part: str, fd: int, rel: str) -> int:
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise _refused(exc, rel, part) from exc


def _refused(exc: OSError, rel: str, part: str) -> OSError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return NotFollowed(f"{rel!r} under --out: {part!r} is a symlink or not a folder; "
                           "not followed")
    return exc


def open_plain(name: str, flags: int, dir_fd: int) -> int:
    """An existing plain file, never through a symlink, never one with other names (a hard
    link planted to someone else's file)."""
    try:
        # O_NONBLOCK: a FIFO planted at the name would hold the open forever.
        fd = os.open(name, flags | os.O_CLOEXEC | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotFollowed(f"{name!r} is a symlink; not followed") from exc
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise NotFollowed(f"{name!r} is not a plain file of its own; not used")
    return fd


def check_home(out: Path, home: Path) -> None:
    """Make bulkfetch's own folder under OUT (`.bulkfetch/`, a shard's), refusing a symlink
    on the way: the lock, the manifest and the state then open plain files in it, with
    O_NOFOLLOW (a link someone planted at one of their names is refused, not followed)."""
    rel = home.relative_to(out).as_posix()
    top = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_folder(top, rel)
    finally:
        os.close(top)
    try:
        for name in OWN_FILES:
            with contextlib.suppress(FileNotFoundError):
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    raise NotFollowed(f"'{rel}/{name}' is a symlink; not followed")
                if not stat.S_ISREG(mode):  # a FIFO there would hold the run forever
                    raise NotFollowed(f"'{rel}/{name}' is not a plain file; not used")
    finally:
        os.close(fd)


class NoRun(Exception):
    """No run ever wrote into this folder."""


def run_homes(out: Path) -> list[Path]:
    """The run's own folders under OUT (the plain one, the shards'), each checked as a run
    checks it, for the commands that read them (`verify`, `report`): a link planted there is
    refused (NotFollowed), not followed; NoRun where no run ever was."""
    home = Layout.of(out, None).home
    try:
        info = os.lstat(home)
    except OSError:
        raise NoRun(f"{str(out)!r}: no run here (no {STATE_DIR}/)") from None
    if not stat.S_ISDIR(info.st_mode):
        raise NotFollowed(f"{str(home)!r} is not a folder (a symlink?); not followed")
    homes = [home, *shard_homes(out)]
    for each in homes:
        check_home(out, each)  # raises NotFollowed
    return homes


class FolderSink:
    """Where bodies go: the --out folder, and the threads that write into it."""

    resumable = True

    def __init__(self, root: Path, writers: Writers, *, tag: str = "") -> None:
        self.root = root
        self.writers = writers
        # A shard's temp files carry its name: shards on other machines share these folders,
        # and only our own leftovers may be swept (by whether their PID still runs here).
        self.temp_prefix = f"{TEMP_PREFIX}{tag}-" if tag else TEMP_PREFIX
        self._temp_name = re.compile(
            re.escape(self.temp_prefix) + r"(\d+)-\d+" + re.escape(TEMP_SUFFIX))
        self._root_fd = -1  # OUT itself (a symlink there is the user's own choice)
        self._opening = threading.Lock()
        self._swept: set[str] = set()
        self._kept: set[str] | None = None  # names in the partial folder when the run began

    def close(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def root_fd(self) -> int:
        """Thread side: OUT's descriptor, opened once."""
        with self._opening:
            if self._root_fd < 0:
                self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            return self._root_fd

    def folder(self, rel: str) -> int:
        """Thread side: the folder `rel` under OUT, made if missing; its own leftovers swept
        the first time."""
        fd = open_folder(self.root_fd(), rel)
        if rel not in self._swept:
            self._swept.add(rel)
            _sweep(fd, self._temp_name)
        return fd

    def open(
        self, rel: SafeRelPath, body: Body | None = None, *, partial: Partial | None = None,
        flush_bytes: int = FLUSH_BYTES,
    ) -> PendingFile:
        return PendingFile(self, rel, partial, flush_bytes,
                           mtime=body.mtime if body is not None else None)

    def partial(self, url: str, validator: str, offset: int, total: int | None) -> Partial:
        key = url_key(url).hex()
        return Partial(f"{key}.part", f"{key}.json", url, validator, offset, total)

    async def drop_partial(self, url: str) -> None:
        await self.writers.run(self._drop, self.partial(url, "", 0, None))

    def _drop(self, partial: Partial) -> None:
        fd = self.folder(PARTIAL_DIR)
        try:
            for name in (partial.part, partial.meta):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def find_resume(self, url: str) -> Resume | None:
        """Thread side (intake): what an earlier run kept of this URL's body, if anything."""
        if self._kept is None:
            self._kept = set(_listing(self.root))
        spot = self.partial(url, "", 0, None)
        if spot.meta not in self._kept:  # the usual case: no file operation per URL
            return None
        try:
            meta, size = _read_kept(self.root, spot)
        except (OSError, orjson.JSONDecodeError):
            return None
        # Its name is the URL's digest; an older bulkfetch kept the URL itself.
        ours = meta.get("key") == url_key(url).hex() or meta.get("url") == url
        if not ours or not size or not isinstance(meta.get("validator"), str):
            return None
        total = meta.get("total")
        validator = meta["validator"]
        assert isinstance(validator, str)
        if "segments" in meta:  # a split body: every segment continues where it stopped
            segments = _segments(meta["segments"], total, size)
            if segments is None:
                return None
            name = meta.get("name")
            return Resume(0, validator, total if isinstance(total, int) else None,
                          segments=segments, name=name if isinstance(name, str) else None)
        return Resume(size, validator, total if isinstance(total, int) else None)


def _segments(rows: object, total: object,
              size: int) -> tuple[tuple[int, int, int], ...] | None:
    """A split partial's progress, if it makes sense for a file of `size` bytes: segments in
    order that cover the whole body, each one's next byte within it."""
    if not isinstance(rows, list) or not isinstance(total, int) or size != total:
        return None
    found, expected = [], 0
    for row in rows:
        if (not isinstance(row, list) or len(row) != 3
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in row)):
            return None
        start, end, done = row
        if start != expected or not start <= done <= end:
            return None
        found.append((start, end, done))
        expected = end
    return tuple(found) if found and expected == total else None


def _listing(root: Path) -> list[str]:
    try:
        with contextlib.closing(_Dir(root, PARTIAL_DIR)) as folder:
            return os.listdir(folder.fd)
    except OSError:
        return []


def _read_kept(root: Path, spot: Partial) -> tuple[dict[str, object], int]:
    with contextlib.closing(_Dir(root, PARTIAL_DIR)) as folder:
        fd = open_plain(spot.meta, os.O_RDONLY, folder.fd)
        with open(fd, "rb") as file:
            meta = orjson.loads(file.read(64 * 1024))
        info = os.stat(spot.part, dir_fd=folder.fd, follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode) or not isinstance(meta, dict):
        raise NotFollowed("not a plain file")
    return meta, info.st_size


class _Dir:
    """A folder under a root path, opened without following links (closed by `close`)."""

    def __init__(self, root: Path, rel: str) -> None:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fd = open_folder(top, rel, create=False)
        finally:
            os.close(top)

    def close(self) -> None:
        os.close(self.fd)


def _sweep(folder_fd: int, temp_name: re.Pattern[str]) -> None:
    """Remove temp files that a process killed outright (SIGKILL, the OOM killer) left in the
    folder. The lock on --out keeps other runs away; a worker of this run is still alive."""
    with contextlib.suppress(OSError), os.scandir(folder_fd) as entries:
        for entry in entries:
            match = temp_name.fullmatch(entry.name)
            if match is not None and not _alive(int(match[1])):
                with contextlib.suppress(OSError):
                    os.unlink(entry.name, dir_fd=folder_fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        pass
    return True


class PendingFile:
    """One body on its way to disk; hashed and counted as it is written."""

    def __init__(
        self, sink: FolderSink, rel: SafeRelPath, partial: Partial | None, flush_bytes: int,
        *, mtime: float | None = None,
    ) -> None:
        self._sink = sink
        self._mtime = mtime
        self._flush_bytes = flush_bytes
        self._partial = partial
        self.offset = partial.offset if partial else 0
        self.on_disk = self.offset
        self._folder, _, self._leaf = rel.rpartition("/")
        self._temp = ""  # its name in the folder of `_dir_fd`
        self._dir_fd = -1
        self._fd = -1
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._flushing: asyncio.Future[None] | None = None  # at most one write in flight
        self._hash = hashlib.sha256()
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)
        # Strictly more: a body of exactly one flush goes at commit, in one hop with the rename
        # (2,000 x 256 KiB: 1.95-2.16 s -> 1.77-1.90 s; bench/NOTES.md).
        if self._buffered > self._flush_bytes:
            await self._wait_flush()
            chunks, self._buffer, self._buffered = self._buffer, [], 0
            self._flushing = self._sink.writers.submit(self._write, chunks)

    async def commit(self, *, expect_sha256: str | None = None) -> str:
        """Write what is left, close, and rename into place; returns the sha256 hex digest.

        With `expect_sha256`, a body with another digest is discarded, never published.
        """
        chunks, self._buffer = self._buffer, []
        writers = self._sink.writers
        try:
            if self._fd < 0 and self._flushing is None:  # a small body: all of it is here
                return await writers.run_batched(self._commit, chunks, expect_sha256)
            await self._wait_flush()
            return await writers.run(self._commit, chunks, expect_sha256)
        except BaseException:
            await self.discard()
            raise

    async def discard(self, *, keep: bool = False) -> Resume | None:
        """Forget the body: nothing appears at the final path and the temp file goes, unless
        `keep` and it is a partial worth resuming: then what to resume from is returned."""
        flushing, self._flushing = self._flushing, None
        chunks, self._buffer = self._buffer, []
        if flushing is not None:
            with contextlib.suppress(Exception):
                await settle(flushing, defer_cancel=True)
        return await self._sink.writers.run(self._discard, keep, chunks)

    async def _wait_flush(self) -> None:
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            await settle(flushing)

    # Below: thread side. Each runs whole on a writer thread; never two at once for one file.

    def _write(self, chunks: list[bytes], *, last: bool = False) -> None:
        if self._fd < 0:
            # A body that fits one write needs no resuming: it goes straight beside its file.
            if self._partial is not None and (self.offset or not last):
                self._dir_fd = self._sink.folder(PARTIAL_DIR)
                self._temp, self._fd = _open_partial(self._partial, self._dir_fd, self._hash)
            else:
                self._dir_fd = self._sink.folder(self._folder)
                self._temp, self._fd = _create_temp(self._dir_fd, self._sink.temp_prefix)
        for chunk in chunks:
            self._hash.update(chunk)
        write_all(self._fd, chunks)
        self.on_disk += sum(len(chunk) for chunk in chunks)

    def _commit(self, chunks: list[bytes], expect_sha256: str | None) -> str:
        in_one_go = self._fd < 0 and self._partial is None  # a small body: made right here
        self._write(chunks, last=True)
        fd, self._fd = self._fd, -1
        try:
            if self._mtime is not None:  # before the rename: the file appears with its date
                os.utime(fd, (self._mtime, self._mtime))
        finally:
            os.close(fd)
        digest = self._hash.hexdigest()
        if expect_sha256 is not None and digest != expect_sha256:
            raise ChecksumMismatch(digest, expect_sha256)
        # The folder is walked again: it may have been swapped for a link since the write
        # (unless the temp file was made in this very step, a moment ago, from a fresh walk).
        final_fd = self._dir_fd if in_one_go else self._sink.folder(self._folder)
        try:
            os.rename(self._temp, self._leaf, src_dir_fd=self._dir_fd, dst_dir_fd=final_fd)
        finally:
            if final_fd != self._dir_fd:
                os.close(final_fd)
        self._temp = ""
        if self._partial is not None:  # published: a failure from here on changes nothing
            with contextlib.suppress(OSError):
                os.unlink(self._partial.meta, dir_fd=self._dir_fd)
        self._close_dir()
        return digest

    def _discard(self, keep: bool, chunks: list[bytes]) -> Resume | None:
        if keep and chunks and self._partial is not None:  # received bytes are worth keeping
            with contextlib.suppress(OSError):
                self._write(chunks)
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        partial, temp, self._temp = self._partial, self._temp, ""
        try:
            if partial is not None and temp == partial.part and keep and self.on_disk:
                return Resume(self.on_disk, partial.validator, partial.total)
            names = [temp, partial.meta] if partial is not None and temp == partial.part else [
                temp]
            for name in filter(None, names):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=self._dir_fd)
            return None
        finally:
            self._close_dir()

    def _close_dir(self) -> None:
        if self._dir_fd >= 0:
            fd, self._dir_fd = self._dir_fd, -1
            os.close(fd)


def _open_partial(partial: Partial, dir_fd: int, digest: hashlib._Hash) -> tuple[str, int]:
    """Open the partial file: continue after `offset` bytes (hashing them again, from the
    very file that is written, never a name looked up again), or start it anew."""
    if partial.offset:
        fd = open_plain(partial.part, os.O_RDWR, dir_fd)
        try:
            if os.fstat(fd).st_size < partial.offset:  # changed since it was found: never pad
                raise NotFollowed(f"{partial.part!r} is shorter than the bytes it should keep; "
                                  "not used")
            os.ftruncate(fd, partial.offset)
            position = 0
            while block := os.pread(fd, READ_BYTES, position):
                digest.update(block)
                position += len(block)
            os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            os.close(fd)
            raise
        return partial.part, fd
    with contextlib.suppress(FileNotFoundError):  # a stale one, or a link planted there
        os.unlink(partial.part, dir_fd=dir_fd)
    fd = os.open(partial.part, _NEW_FILE, 0o666, dir_fd=dir_fd)
    meta = {"key": url_key(partial.url).hex(), "url": mask(partial.url),
            "validator": partial.validator, "total": partial.total}
    try:
        write_json(Path(partial.meta), meta, indent=False, dir_fd=dir_fd)
    except BaseException:
        os.close(fd)
        os.unlink(partial.part, dir_fd=dir_fd)
        raise
    return partial.part, fd


def _create_temp(dir_fd: int, prefix: str) -> tuple[str, int]:
    """A new temp file in the folder; O_EXCL makes a name left by an earlier run safe to meet."""
    while True:
        name = f"{prefix}{os.getpid()}-{next(_temp_ids)}{TEMP_SUFFIX}"
        try:
            return name, os.open(name, _NEW_FILE, 0o666, dir_fd=dir_fd)
        except FileExistsError:
            continue
