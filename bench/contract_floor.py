"""The contract floor: the least an aiohttp fetcher can do that still keeps bulkfetch's promises.

    python bench/contract_floor.py URLS_FILE OUT CONCURRENCY

As bench/aiohttp_floor.py (one process per core, one session each, a connector limit of its
share, `iter_chunked`), but every body is hashed as it arrives and written by a writer thread
(the event loop never writes) to a temp file beside its final path, 1 MiB at a time at most
(bounded memory), then renamed into place; one JSON line per file goes to a manifest. No
retries, no resume, no dedupe, no naming beyond the URL's last segment, no display: what is
left is the price of the contract itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aiohttp_floor import in_processes

CHUNK_BYTES = 256 * 1024
FLUSH_BYTES = 1024 * 1024


class Body:
    """A body on its way to disk: flushed by a writer thread past FLUSH_BYTES, then renamed
    into place with what is left, in one more hop (a small body: one hop in all)."""

    def __init__(self, folder: str, name: str) -> None:
        self.final = os.path.join(folder, name)
        self.temp = os.path.join(folder, f".{name}.{os.getpid()}.part")
        self.fd = -1
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.size = 0

    def take(self) -> list[bytes]:
        chunks, self.chunks, self.buffered = self.chunks, [], 0
        return chunks

    def write(self, chunks: list[bytes]) -> None:  # thread side
        if self.fd < 0:
            self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        views = [memoryview(c) for c in chunks]
        while views:  # writev may take less than asked
            done = os.writev(self.fd, views)
            while views and done >= len(views[0]):
                done -= len(views.pop(0))
            if views and done:
                views[0] = views[0][done:]

    def publish(self, chunks: list[bytes]) -> None:  # thread side
        self.write(chunks)
        os.close(self.fd)
        os.replace(self.temp, self.final)


async def fetch_all(urls: list[str], out: Path, limit: int, manifest: Path) -> None:
    pending = iter(urls)
    loop = asyncio.get_running_loop()
    threads = ThreadPoolExecutor(2)
    lines = bytearray()
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def fetch_one(url: str) -> bytes:
            digest = hashlib.sha256()
            body = Body(str(out), url.rsplit("/", 1)[1])
            async with session.get(url) as resp:
                resp.raise_for_status()
                async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                    digest.update(chunk)
                    body.chunks.append(chunk)
                    body.buffered += len(chunk)
                    body.size += len(chunk)
                    if body.buffered > FLUSH_BYTES:
                        await loop.run_in_executor(threads, body.write, body.take())
            await loop.run_in_executor(threads, body.publish, body.take())
            return orjson.dumps({"url": url, "path": os.path.basename(body.final),
                                 "bytes": body.size, "sha256": digest.hexdigest()},
                                option=orjson.OPT_APPEND_NEWLINE)

        async def work() -> None:
            nonlocal lines
            for url in pending:
                line = await fetch_one(url)  # then append: `lines` may be swapped meanwhile
                lines += line
                if len(lines) > 256 * 1024:
                    data, lines = lines, bytearray()
                    await loop.run_in_executor(threads, _append, manifest, data)

        await asyncio.gather(*(work() for _ in range(limit)))
    await loop.run_in_executor(threads, _append, manifest, lines)
    threads.shutdown()


def _append(path: Path, data: bytes | bytearray) -> None:
    with path.open("ab") as f:
        f.write(data)


def main() -> None:
    urls = Path(sys.argv[1]).read_text(encoding="utf-8").split()
    out = Path(sys.argv[2])
    (out / ".bulkfetch").mkdir(parents=True, exist_ok=True)
    sys.exit(in_processes(urls, int(sys.argv[3]), lambda share, limit, i: fetch_all(
        share, out, limit, out / ".bulkfetch" / f"manifest-{i}.jsonl")))


if __name__ == "__main__":
    main()
