"""Atomic file writing: a body is written to a temp file beside its final path, then renamed.

A body too big to land in one write, whose answer names a strong validator, is written in
OUT/.bulkfetch/partial/ instead (KEY.part, with KEY.json naming the validator and the URL,
masked: KEY is the URL's digest, `layout.url_key`), so that
an attempt or a run cut off, even by SIGKILL, can continue it with Range + If-Range.

The event loop never blocks on the disk, and it pays one thread hop per flush (`FLUSH_BYTES`,
more for a big body; one in all for a small body) instead of one per chunk or file operation.
Every thread job runs to its end even when the task is cancelled meanwhile; the cancellation is
delivered after, so a temp file is never left behind and a completed rename is never unreported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from bulkfetch.models import Resume, SafeRelPath
from bulkfetch.show.outgoing import mask
from bulkfetch.store.jsonfile import write_json
from bulkfetch.store.layout import PART_SUFFIX, PARTIAL_DIR, url_key
from bulkfetch.store.threads import Writers, settle, write_all

FLUSH_BYTES = 256 * 1024
TEMP_PREFIX = ".bulkfetch-"
TEMP_SUFFIX = PART_SUFFIX
_temp_ids = itertools.count()  # next() on a count is atomic under the GIL
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)



@dataclass(frozen=True, slots=True)
class Partial:
    """Where a resumable body is kept until it is whole."""

    part: str
    meta: str
    url: str
    validator: str
    offset: int  # bytes already there from an earlier attempt
    total: int | None  # the whole body's length, when it was announced


@dataclass(frozen=True, slots=True)
class Body:
    """What a sink may want to know of a body before it arrives (a bucket: its metadata)."""

    url: str  # as listed (a sink masks it where it leaves)
    length: int | None = None  # Content-Length, when announced
    content_type: str | None = None
    replaces: bool = False  # an earlier run of ours saved this URL at this path


class ChecksumMismatch(Exception):
    """The body's sha256 is not the one the list asked for; the file was not published."""

    def __init__(self, got: str, expected: str) -> None:
        super().__init__(f"sha256 mismatch: got {got}, the list says {expected}")


class Conflict(Exception):
    """Something else is already at the final name and create-only kept it there."""


class StoreFailed(Exception):
    """The object store refused or lost a write; `retryable` if another attempt may work."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Pending(Protocol):
    """One body on its way to its final name."""

    offset: int  # bytes kept from an earlier attempt, before `size`
    size: int  # bytes written by this attempt

    async def write(self, chunk: bytes) -> None: ...
    async def commit(self, *, expect_sha256: str | None = None) -> str: ...
    async def discard(self, *, keep: bool = False) -> Resume | None: ...


class Target(Protocol):
    """Where bodies go: a folder (`Sink`) or a bucket (`objects.BucketSink`)."""

    resumable: bool  # keeps cut-off bodies to continue with Range

    def open(self, rel: SafeRelPath, body: Body, *, partial: Partial | None = None,
             flush_bytes: int = ...) -> Pending: ...
    def partial(self, url: str, validator: str, offset: int, total: int | None) -> Partial: ...
    async def drop_partial(self, url: str) -> None: ...
    def find_resume(self, url: str) -> Resume | None: ...


class Sink:
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
        self._real_root = os.path.realpath(root)
        self._known_dirs: set[str] = set()
        self._kept: set[str] | None = None  # names in the partial folder when the run began

    def open(
        self, rel: SafeRelPath, body: Body | None = None, *, partial: Partial | None = None,
        flush_bytes: int = FLUSH_BYTES,
    ) -> PendingFile:
        return PendingFile(self, rel, partial, flush_bytes)

    def partial(self, url: str, validator: str, offset: int, total: int | None) -> Partial:
        base = os.path.join(self.root, PARTIAL_DIR, url_key(url).hex())
        return Partial(f"{base}.part", f"{base}.json", url, validator, offset, total)

    async def drop_partial(self, url: str) -> None:
        await self.writers.run(_drop, self.partial(url, "", 0, None))

    def find_resume(self, url: str) -> Resume | None:
        """Thread side (intake): what an earlier run kept of this URL's body, if anything."""
        if self._kept is None:
            try:
                self._kept = set(os.listdir(os.path.join(self.root, PARTIAL_DIR)))
            except OSError:
                self._kept = set()
        if not self._kept:  # the usual case: no digest and no path per URL
            return None
        spot = self.partial(url, "", 0, None)
        if os.path.basename(spot.meta) not in self._kept:
            return None
        try:
            meta = orjson.loads(Path(spot.meta).read_bytes())
            size = os.stat(spot.part).st_size
        except (OSError, orjson.JSONDecodeError):
            return None
        # Its name is the URL's digest; an older bulkfetch kept the URL itself.
        ours = meta.get("key") == url_key(url).hex() or meta.get("url") == url
        if not ours or not size or not isinstance(meta.get("validator"), str):
            return None
        total = meta.get("total")
        return Resume(size, meta["validator"], total if isinstance(total, int) else None)

    def ensure_dir(self, folder: str) -> None:
        """Create `folder` and check that it really lies inside --out (no symlink leads out)."""
        if folder in self._known_dirs:
            return
        os.makedirs(folder, exist_ok=True)
        real = os.path.realpath(folder)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise OSError(f"folder {folder!r} leads outside --out (through a symlink)")
        _sweep(folder, self._temp_name)
        self._known_dirs.add(folder)


def _sweep(folder: str, temp_name: re.Pattern[str]) -> None:
    """Remove temp files that a process killed outright (SIGKILL, the OOM killer) left in
    `folder`. The lock on --out keeps other runs away; a worker of this run is still alive."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = temp_name.fullmatch(entry.name)
            if match is not None and not _alive(int(match[1])):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


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
        self, sink: Sink, rel: SafeRelPath, partial: Partial | None, flush_bytes: int
    ) -> None:
        self._sink = sink
        self._flush_bytes = flush_bytes
        self._partial = partial
        self.offset = partial.offset if partial else 0
        self.on_disk = self.offset
        self.final = os.path.join(sink.root, rel)
        self._temp = ""
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
                self._temp, self._fd = _open_partial(self._partial, self._hash)
            else:
                folder = os.path.dirname(self.final)
                self._sink.ensure_dir(folder)
                self._temp, self._fd = _create_temp(folder, self._sink.temp_prefix)
        for chunk in chunks:
            self._hash.update(chunk)
        write_all(self._fd, chunks)
        self.on_disk += sum(len(chunk) for chunk in chunks)

    def _commit(self, chunks: list[bytes], expect_sha256: str | None) -> str:
        self._write(chunks, last=True)
        fd, self._fd = self._fd, -1
        os.close(fd)
        digest = self._hash.hexdigest()
        if expect_sha256 is not None and digest != expect_sha256:
            raise ChecksumMismatch(digest, expect_sha256)
        self._sink.ensure_dir(os.path.dirname(self.final))
        os.replace(self._temp, self.final)
        self._temp = ""
        if self._partial is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._partial.meta)
        return digest

    def _discard(self, keep: bool, chunks: list[bytes]) -> Resume | None:
        if keep and chunks and self._partial is not None:  # received bytes are worth keeping
            with contextlib.suppress(OSError):
                self._write(chunks)
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        partial, temp, self._temp = self._partial, self._temp, ""
        if partial is not None and temp == partial.part and keep and self.on_disk:
            return Resume(self.on_disk, partial.validator, partial.total)
        if partial is not None and temp == partial.part:
            _drop(partial)
        elif temp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return None


def _open_partial(partial: Partial, digest: hashlib._Hash) -> tuple[str, int]:
    """Open the partial file: continue after `offset` bytes (hashing them again), or start it."""
    os.makedirs(os.path.dirname(partial.part), exist_ok=True)
    if partial.offset:
        fd = os.open(partial.part, os.O_WRONLY | os.O_CLOEXEC)
        os.ftruncate(fd, partial.offset)
        with open(partial.part, "rb") as kept:
            while block := kept.read(1 << 20):
                digest.update(block)
        os.lseek(fd, 0, os.SEEK_END)
        return partial.part, fd
    fd = os.open(partial.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    meta = {"key": url_key(partial.url).hex(), "url": mask(partial.url),
            "validator": partial.validator, "total": partial.total}
    write_json(Path(partial.meta), meta, indent=False)
    return partial.part, fd


def _drop(partial: Partial) -> None:
    for name in (partial.part, partial.meta):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _create_temp(folder: str, prefix: str) -> tuple[str, int]:
    """A new temp file in `folder`; O_EXCL makes a name left by an earlier run safe to meet."""
    while True:
        name = os.path.join(folder, f"{prefix}{os.getpid()}-{next(_temp_ids)}{TEMP_SUFFIX}")
        try:
            return name, os.open(name, _OPEN_FLAGS, 0o666)
        except FileExistsError:
            continue
