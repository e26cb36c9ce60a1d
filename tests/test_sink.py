"""Atomic writes on a real folder: whole files or nothing, never outside --out."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bulkfetch.models import SafeRelPath
from bulkfetch.store.folder import FLUSH_BYTES, FolderSink, PendingFile
from bulkfetch.store.threads import Writers


def with_sink(root: Path, body: Callable[[FolderSink], Awaitable[None]]) -> None:
    async def main() -> None:
        writers = Writers()
        sink = FolderSink(root, writers)
        try:
            await body(sink)
        finally:
            sink.close()
            writers.close()

    asyncio.run(main())


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def write_all(pending: PendingFile, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await pending.write(chunk)


@pytest.mark.parametrize(
    "sizes",
    [[], [1], [1000, 2000], [65536] * 20, [FLUSH_BYTES], [FLUSH_BYTES, 1], [FLUSH_BYTES * 3 + 7]],
)
def test_commit_publishes_the_whole_body(tmp_path: Path, sizes: list[int]) -> None:
    chunks = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    data = b"".join(chunks)

    async def body(sink: FolderSink) -> None:
        pending = sink.open(SafeRelPath("host/deep/file.bin"))
        await write_all(pending, chunks)
        assert await pending.commit() == hashlib.sha256(data).hexdigest()
        assert pending.size == len(data)

    with_sink(tmp_path, body)
    assert (tmp_path / "host/deep/file.bin").read_bytes() == data
    assert leftovers(tmp_path) == [tmp_path / "host/deep/file.bin"]


def test_a_body_of_one_flush_touches_the_disk_only_at_commit(tmp_path: Path) -> None:
    """One hop to a writer thread for the whole file, not a flush and then a commit."""

    async def body(sink: FolderSink) -> None:
        pending = sink.open(SafeRelPath("h/one"))
        await pending.write(b"x" * FLUSH_BYTES)
        await asyncio.sleep(0.2)  # time enough for a flush, had one started
        assert leftovers(tmp_path) == []
        await pending.write(b"y")  # now past one flush: it starts
        await pending.write(b"z" * (FLUSH_BYTES + 1))  # and this waits for it
        assert len(leftovers(tmp_path)) == 1
        await pending.commit()

    with_sink(tmp_path, body)
    expected = b"x" * FLUSH_BYTES + b"y" + b"z" * (FLUSH_BYTES + 1)
    assert (tmp_path / "h/one").read_bytes() == expected


def test_commit_replaces_an_older_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"old")

    async def body(sink: FolderSink) -> None:
        pending = sink.open(SafeRelPath("f"))
        await pending.write(b"new")
        await pending.commit()

    with_sink(tmp_path, body)
    assert (tmp_path / "f").read_bytes() == b"new"


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    async def body(sink: FolderSink) -> None:
        pending = sink.open(SafeRelPath("h/x"))
        # The fourth chunk waits for the flush the second one started.
        await write_all(pending, [b"x" * FLUSH_BYTES] * 4)
        assert leftovers(tmp_path)  # the temp file exists while the body streams
        await pending.discard()

    with_sink(tmp_path, body)
    assert leftovers(tmp_path) == []


def test_cancelled_writer_leaves_no_temp_file(tmp_path: Path) -> None:
    """Cancellation mid-body: the cleanup runs after the thread's write, not before it."""

    async def body(sink: FolderSink) -> None:
        pending = sink.open(SafeRelPath("h/x"))

        async def stream() -> None:
            try:
                # Bounded: a swallowed cancellation must fail the test, not fill the disk.
                for _ in range(400):
                    await pending.write(b"y" * FLUSH_BYTES)
            except asyncio.CancelledError:
                await pending.discard()
                raise

        task = asyncio.create_task(stream())
        while not leftovers(tmp_path):  # noqa: ASYNC110 (polling the disk, not an event)
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with_sink(tmp_path, body)
    assert leftovers(tmp_path) == []


def test_a_symlink_cannot_lead_outside(tmp_path: Path) -> None:
    """A folder inside --out that links elsewhere is refused; nothing is written there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "out"
    root.mkdir()
    (root / "host").symlink_to(outside)

    async def body(sink: FolderSink) -> None:
        pending = sink.open(SafeRelPath("host/x"))
        await pending.write(b"data")
        with pytest.raises(OSError, match="is a symlink or not a folder; not followed"):
            await pending.commit()

    with_sink(root, body)
    assert list(outside.iterdir()) == []


def test_a_folder_in_the_way_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()

    async def body(sink: FolderSink) -> None:
        pending = sink.open(SafeRelPath("x"))
        await pending.write(b"data")
        with pytest.raises(IsADirectoryError):
            await pending.commit()

    with_sink(tmp_path, body)
    assert leftovers(tmp_path) == []
