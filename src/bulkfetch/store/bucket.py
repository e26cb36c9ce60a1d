"""Bodies into a bucket, as safe as files: a body appears at its key whole or not at all.

A body that fits one part goes up in one PUT when it has all arrived; a bigger one streams as
a multipart upload while it arrives, one part at a time, and appears when the upload is
completed. A failed or interrupted body aborts its upload: nothing at the key, no upload left
open (a process killed outright leaves one: the README's lifecycle rule removes it).

A new key is written create-only (`If-None-Match: *`): two shards, or a pod run again before
its state reached the bucket, never overwrite each other. When the key is taken, the object is
compared by the sha256 we stored with it: the same body is success, another is a Conflict. A
URL that an earlier run of ours saved there (or `--force`) replaces its object.

Memory: each upload holds at most one part; all of them together hold at most `Budget` bytes,
taken whole before the first byte is kept, so that uploads never wait on each other's memory.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import TYPE_CHECKING, Any

from bulkfetch.models import Bucket, Resume, SafeRelPath
from bulkfetch.show.outgoing import mask
from bulkfetch.store import s3
from bulkfetch.store.s3put import FastPut, request_headers
from bulkfetch.store.sink import Body, ChecksumMismatch, Conflict, Partial, StoreFailed
from bulkfetch.store.threads import settle

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

PART_BYTES = 8 * 1024 * 1024  # S3: at least 5 MiB a part but the last, at most 10,000 parts
MAX_PARTS = 10_000
# A part is held whole until it goes up: whatever a server announces, never more than this
# (64 MiB x 10,000 parts: objects up to 625 GiB; the budget then holds four such at once).
MAX_PART_BYTES = 64 * 1024 * 1024
BUDGET_BYTES = 256 * 1024 * 1024
MAX_METADATA_URL = 1024
INLINE_HASH_BYTES = 256 * 1024  # S3 takes 2 KB of user metadata in all


class Budget:
    """Bytes that uploads may hold in memory, all together; granted in order of asking."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def take(self, nbytes: int) -> None:
        nbytes = min(nbytes, self.total)
        if not self._waiting and self._free >= nbytes:
            self._free -= nbytes
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting.append((nbytes, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.give(nbytes)
            else:
                self._waiting.remove((nbytes, granted))
            raise

    def give(self, nbytes: int) -> None:
        self._free += min(nbytes, self.total)
        while self._waiting and self._waiting[0][0] <= self._free:
            nbytes, granted = self._waiting.popleft()
            if not granted.cancelled():
                self._free -= nbytes
                granted.set_result(None)


class BucketSink:
    """Where bodies go when --out is a bucket; one per event loop, over its one S3 client."""

    resumable = False  # a cut-off body is not kept: its upload is aborted

    def __init__(self, bucket: Bucket, client: S3Client, *, budget: Budget,
                 replace: bool = False, fast: FastPut | None = None) -> None:
        self.bucket = bucket
        self.client = client
        self.fast = fast  # one-PUT bodies signed and sent without botocore (s3put.py)
        self.budget = budget
        self.replace = replace  # --force: every key may be overwritten
        self.create_only = True  # until the store says it has no conditional writes

    def open(self, rel: SafeRelPath, body: Body, *, partial: Partial | None = None,
             flush_bytes: int = 0) -> PendingObject:
        return PendingObject(self, self.bucket.key(rel), body)

    def partial(self, url: str, validator: str, offset: int, total: int | None) -> Partial:
        raise NotImplementedError("a bucket keeps no partial bodies")

    async def drop_partial(self, url: str) -> None:
        return None

    def find_resume(self, url: str) -> Resume | None:
        return None


class PendingObject:
    """One body on its way to its key; hashed as it arrives."""

    def __init__(self, sink: BucketSink, key: str, body: Body) -> None:
        self._sink = sink
        self._key = key
        self._body = body
        self._part_bytes = _part_bytes(body.length)
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._held = 0  # bytes of the budget this body holds
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._hash = hashlib.sha256()
        self.offset = 0
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        if not self._held:
            self._held = min(self._part_bytes, self._body.length or self._part_bytes) or 1
            await self._sink.budget.take(self._held)
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)
        if self._buffered >= self._part_bytes:
            await self._send_part()

    async def commit(self, *, expect_sha256: str | None = None) -> str:
        """Put the body at its key; returns its sha256 hex digest. With `expect_sha256`, a
        body with another digest is dropped, never published."""
        try:
            if self._upload_id is not None and self._buffered:
                await self._send_part()
            elif self._upload_id is None:
                await self._hash_whole()
            digest = self._hash.hexdigest()
            if expect_sha256 is not None and digest != expect_sha256:
                raise ChecksumMismatch(digest, expect_sha256)
            # Once asked, a PUT may take effect: it is seen to its end, so that what landed
            # is reported even when a signal comes meanwhile.
            await settle(asyncio.ensure_future(self._publish(digest)), defer_cancel=True)
            return digest
        except BaseException:
            await self.discard()
            raise
        finally:
            self._release()

    async def discard(self, *, keep: bool = False) -> Resume | None:
        """Forget the body: its upload, if one was begun, is aborted (to its end)."""
        self._chunks, self._buffered = [], 0
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            await settle(asyncio.ensure_future(self._abort(upload_id)), defer_cancel=True)
        self._release()
        return None

    async def _hash_whole(self) -> None:
        """The sha256 of a one-PUT body: on a thread past INLINE_HASH_BYTES (8 MiB is 20 ms,
        a stall of every transfer of this loop)."""
        self._chunks = [data := b"".join(self._chunks)]  # joined once: the PUT sends it as is
        if len(data) <= INLINE_HASH_BYTES:
            self._hash.update(data)
        else:
            await asyncio.get_running_loop().run_in_executor(None, self._hash.update, data)

    def _release(self) -> None:
        held, self._held = self._held, 0
        if held:
            self._sink.budget.give(held)

    async def _send_part(self) -> None:
        data = b"".join(self._chunks)
        self._chunks, self._buffered = [], 0
        client, bucket = self._sink.client, self._sink.bucket.name
        if len(self._parts) >= MAX_PARTS:
            raise StoreFailed(f"the body is over {MAX_PARTS} parts of {self._part_bytes:,} "
                              "bytes, too big for one object", retryable=False)
        try:
            if self._upload_id is None:
                created = await client.create_multipart_upload(
                    Bucket=bucket, Key=self._key, **self._headers(None))
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            loop = asyncio.get_running_loop()
            # The hash of a part (25 ms for 8 MiB) runs on a thread while the part goes up.
            sent, _ = await asyncio.gather(
                client.upload_part(Bucket=bucket, Key=self._key, UploadId=self._upload_id,
                                   PartNumber=number, Body=data),
                loop.run_in_executor(None, self._hash.update, data),
            )
        except Exception as exc:
            raise _failed(exc, "put a part") from exc
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    async def _publish(self, digest: str) -> None:
        create_only = self._sink.create_only and not self._replaces
        try:
            await self._put(digest, create_only=create_only)
        except Exception as exc:
            status = s3.status_of(exc)
            # A store without If-None-Match (older MinIO) says NotImplemented; a proxy's 501
            # to the method is no reason to write over other objects for the rest of the run.
            if create_only and status == 501 and s3.code_of(exc) == "NotImplemented":
                self._sink.create_only = False
                return await self._publish(digest)
            if status != 412:
                raise _failed(exc, "put the object") from exc
            if not await self._same(digest):
                raise Conflict(f"an object is already at {self._where} with other content; "
                               "not overwritten (--force replaces it)") from exc
        return None

    async def _put(self, digest: str, *, create_only: bool) -> None:
        client, bucket, key = self._sink.client, self._sink.bucket.name, self._key
        guard: dict[str, Any] = {"IfNoneMatch": "*"} if create_only else {}
        if self._upload_id is None:
            body = b"".join(self._chunks)
            fast = self._sink.fast
            if fast is not None and await fast.put(key, body, sha256=digest, headers=(
                    request_headers(self._metadata(digest), self._content_type,
                                    create_only=create_only))):
                return
            await client.put_object(Bucket=bucket, Key=key, Body=body,
                                    **self._headers(digest), **guard)
            return
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts}, **guard)
        self._upload_id = None
        await _tag(client, bucket, key, digest)

    @property
    def _where(self) -> str:
        return f"s3://{self._sink.bucket.name}/{self._key}"

    @property
    def _replaces(self) -> bool:
        return self._sink.replace or self._body.replaces

    def _headers(self, digest: str | None) -> dict[str, Any]:
        """The object's metadata and type, as botocore's arguments."""
        headers: dict[str, Any] = {"Metadata": self._metadata(digest)}
        if self._content_type:
            headers["ContentType"] = self._content_type
        return headers

    def _metadata(self, digest: str | None) -> dict[str, str]:
        """Its sha256 (known up front only for one PUT; a multipart object gets it as a tag
        when it is complete) and where it came from."""
        metadata = {"sha256": digest} if digest else {}
        source = mask(self._body.url)  # metadata leaves us: never a password
        if len(source) <= MAX_METADATA_URL and source.isascii() and source.isprintable():
            metadata["source-url"] = source
        return metadata

    @property
    def _content_type(self) -> str | None:
        kind = self._body.content_type
        return kind if kind and kind.isascii() and kind.isprintable() else None

    async def _same(self, digest: str) -> bool:
        """Is the object already at the key this very body (a run before ours put it)?"""
        client, bucket = self._sink.client, self._sink.bucket.name
        try:
            head = await client.head_object(Bucket=bucket, Key=self._key)
            if head.get("Metadata", {}).get("sha256") == digest:
                return True
            tags = await client.get_object_tagging(Bucket=bucket, Key=self._key)
        except Exception:
            return False
        return {"Key": "sha256", "Value": digest} in tags.get("TagSet", [])

    async def _abort(self, upload_id: str) -> None:
        try:
            await self._sink.client.abort_multipart_upload(
                Bucket=self._sink.bucket.name, Key=self._key, UploadId=upload_id)
        except Exception:
            # Left open: the bucket's lifecycle rule for incomplete uploads removes it.
            return


async def _tag(client: S3Client, bucket: str, key: str, digest: str) -> None:
    """The sha256 of a multipart object, as a tag; a store without tags keeps it in the
    manifest and the state only."""
    try:
        await client.put_object_tagging(
            Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "sha256", "Value": digest}]})
    except Exception:
        return


def _part_bytes(length: int | None) -> int:
    """Parts big enough that a body of known length fits in MAX_PARTS, and never over
    MAX_PART_BYTES: a body announced larger than that allows fails before a byte is kept."""
    if length is None or length <= PART_BYTES * MAX_PARTS:
        return PART_BYTES
    if length > MAX_PART_BYTES * MAX_PARTS:
        raise StoreFailed(f"the body is announced as {length:,} bytes, more than one object "
                          f"takes here ({MAX_PARTS:,} parts of {MAX_PART_BYTES:,})",
                          retryable=False)
    mib = 1024 * 1024
    return mib * -(-length // (MAX_PARTS * mib))


def _failed(exc: Exception, what: str) -> Exception:
    if isinstance(exc, StoreFailed | Conflict | ChecksumMismatch):
        return exc
    message, retryable = s3.describe(exc)
    return StoreFailed(f"cannot {what} in the bucket: {message}", retryable=retryable)
