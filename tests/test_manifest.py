"""The manifest: every line lands whole, even when the file takes less than it is given."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from bulkfetch.models import Status
from bulkfetch.show.outgoing import make_result
from bulkfetch.store import manifest as manifest_module
from bulkfetch.store.manifest import Manifest
from bulkfetch.store.threads import Writers
from tests.helpers import read_manifest


class ShortWrites(io.FileIO):
    """A file that, like a regular file near a full disk or on a signal, takes at most 100
    bytes per write()."""

    def write(self, data: object) -> int:
        return super().write(memoryview(data)[:100])  # type: ignore[arg-type]


def test_short_writes_lose_no_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.jsonl"
    monkeypatch.setattr(manifest_module, "_open", lambda p, keep_in: ShortWrites(p, "wb"))
    urls = [f"http://h/{n}" for n in range(500)]

    async def main() -> None:
        writers = Writers()
        try:
            async with Manifest(path, writers) as manifest:
                for url in urls:
                    manifest.add(make_result(url, Status.OK, path="x", size=1))
        finally:
            writers.close()

    asyncio.run(main())
    assert sorted(read_manifest(path)) == sorted(urls)
