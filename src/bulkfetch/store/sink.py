"""What every sink shares: the protocols a body's destination meets (a folder,
`store/folder.py`; a bucket, `store/bucket.py`), what a sink is told of a body, and the
failures a sink reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bulkfetch.models import Resume, SafeRelPath


@dataclass(frozen=True, slots=True)
class Partial:
    """Where a resumable body is kept until it is whole: two names in OUT/.bulkfetch/partial/."""

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
    mtime: float | None = None  # the file's modification time (--remote-time); None: now


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
    """Where bodies go: a folder (`folder.FolderSink`) or a bucket (`bucket.BucketSink`)."""

    resumable: bool  # keeps cut-off bodies to continue with Range

    def open(self, rel: SafeRelPath, body: Body, *, partial: Partial | None = None,
             flush_bytes: int = ...) -> Pending: ...
    def partial(self, url: str, validator: str, offset: int, total: int | None) -> Partial: ...
    async def drop_partial(self, url: str) -> None: ...
    def find_resume(self, url: str) -> Resume | None: ...
