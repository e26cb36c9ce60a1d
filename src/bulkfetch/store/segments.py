"""A body written at several offsets at once (--split), in its partial file.

The file is made at its full length (sparse) under .bulkfetch/partial/, each segment's bytes
are written where they go by the writer threads, and the progress of every segment (start,
end, next byte) is saved beside it in the partial's JSON, never ahead of the bytes written,
so that a run killed outright continues each segment where it stopped. Whole, the file is
hashed from the disk (its bytes came in no order) and renamed into place: nothing appears
at the final name before that.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from bulkfetch.models import Resume, SafeRelPath
from bulkfetch.show.outgoing import mask
from bulkfetch.store.folder import READ_BYTES, FolderSink, NotFollowed, open_plain
from bulkfetch.store.jsonfile import write_json
from bulkfetch.store.layout import PARTIAL_DIR, url_key
from bulkfetch.store.sink import ChecksumMismatch, Partial

Segments = Sequence[tuple[int, int, int]]  # (start, end, next byte to write)
# Made anew, read back for the hash at the end; never through a link planted at the name.
_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


class SplitFile:
    """The Pending of a split body (`write_at` in place of `write`)."""

    def __init__(self, sink: FolderSink, rel: SafeRelPath, partial: Partial,
                 *, mtime: float | None = None, name: str | None = None) -> None:
        self._sink = sink
        self._partial = partial
        self._name = name  # --content-disposition's, kept for the pieces' next run
        self._folder, _, self._leaf = rel.rpartition("/")
        self._mtime = mtime
        self._dir_fd = -1
        self._fd = -1
        self.offset = 0  # what earlier attempts wrote (set by `open`)
        self.size = 0  # what this attempt wrote

    async def open(self, segments: Segments, *, fresh: bool) -> None:
        await self._sink.writers.run(self._open, segments, fresh)

    async def write_at(self, position: int, chunk: bytes) -> None:
        await self._sink.writers.run(_pwrite_all, self._fd, chunk, position)
        self.size += len(chunk)

    async def save(self, segments: Segments) -> None:
        """The progress, for a run that is killed: never ahead of the bytes written."""
        await self._sink.writers.run(self._save, segments)

    async def commit(self, *, expect_sha256: str | None = None) -> str:
        try:
            return await self._sink.writers.run(self._commit, expect_sha256)
        except BaseException:
            await self.discard()
            raise

    async def discard(self, *, keep: bool = False,
                      segments: Segments = ()) -> Resume | None:
        """Close it; with `keep` (and progress to keep), what the next attempt continues."""
        return await self._sink.writers.run(self._discard, keep, segments)

    async def write(self, chunk: bytes) -> None:  # the Pending protocol: bytes go by offset
        raise NotImplementedError("a split body is written with write_at")

    # Thread side.

    def _open(self, segments: Segments, fresh: bool) -> None:
        partial = self._partial
        self._dir_fd = self._sink.folder(PARTIAL_DIR)
        total = partial.total or 0
        if fresh:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial.part, dir_fd=self._dir_fd)
            self._fd = os.open(partial.part, _NEW, 0o666, dir_fd=self._dir_fd)
            os.ftruncate(self._fd, total)
        else:
            self._fd = open_plain(partial.part, os.O_RDWR, self._dir_fd)
            if os.fstat(self._fd).st_size != total:
                raise NotFollowed(f"{partial.part!r} is not the length it should be; not used")
        self.offset = sum(done - start for start, _, done in segments)
        self._save(segments)

    def _save(self, segments: Segments) -> None:
        partial = self._partial
        meta = {"key": url_key(partial.url).hex(), "url": mask(partial.url),
                "validator": partial.validator, "total": partial.total,
                "segments": [list(segment) for segment in segments]}
        if self._name is not None:
            meta["name"] = self._name
        write_json(Path(partial.meta), meta, indent=False, dir_fd=self._dir_fd)

    def _commit(self, expect_sha256: str | None) -> str:
        digest = hashlib.sha256()
        position = 0
        while block := os.pread(self._fd, READ_BYTES, position):
            digest.update(block)
            position += len(block)
        fd, self._fd = self._fd, -1
        try:
            if self._mtime is not None:
                os.utime(fd, (self._mtime, self._mtime))
        finally:
            os.close(fd)
        if expect_sha256 is not None and digest.hexdigest() != expect_sha256:
            raise ChecksumMismatch(digest.hexdigest(), expect_sha256)
        final_fd = self._sink.folder(self._folder)
        try:
            os.rename(self._partial.part, self._leaf, src_dir_fd=self._dir_fd,
                      dst_dir_fd=final_fd)
        finally:
            os.close(final_fd)
        with contextlib.suppress(OSError):
            os.unlink(self._partial.meta, dir_fd=self._dir_fd)
        self._close()
        return digest.hexdigest()

    def _discard(self, keep: bool, segments: Segments) -> Resume | None:
        partial = self._partial
        try:
            if self._fd >= 0 and keep and any(done > start for start, _, done in segments):
                with contextlib.suppress(OSError):
                    self._save(segments)
                    return Resume(0, partial.validator, partial.total,
                                  segments=tuple((a, b, c) for a, b, c in segments),
                                  name=self._name)
            if self._dir_fd >= 0:
                for name in (partial.part, partial.meta):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=self._dir_fd)
            return None
        finally:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)
            self._close()

    def _close(self) -> None:
        if self._dir_fd >= 0:
            fd, self._dir_fd = self._dir_fd, -1
            os.close(fd)


def _pwrite_all(fd: int, chunk: bytes, position: int) -> None:
    view = memoryview(chunk)
    while view:
        written = os.pwrite(fd, view, position)
        view, position = view[written:], position + written
