"""The floor of any aiohttp-based fetcher on this machine: the least work a fetch can be.

    python bench/aiohttp_floor.py URLS_FILE CONCURRENCY

One process per core (as bulkfetch's workers), each with one shared session whose connector
limit is its share of CONCURRENCY, streaming every body with `iter_chunked` and dropping it:
no file, no digest, no manifest, no retries, no progress. The bench runs it beside the real
tools; it is not a peer (it writes nothing), it shows how fast aiohttp itself can go here.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path

import aiohttp

from bulkfetch.schedule.workers import MAX_WORKERS, cores

CHUNK_BYTES = 256 * 1024


async def fetch_all(urls: list[str], limit: int) -> None:
    pending = iter(urls)
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def work() -> None:
            for url in pending:
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    async for _ in resp.content.iter_chunked(CHUNK_BYTES):
                        pass

        await asyncio.gather(*(work() for _ in range(limit)))


def in_processes(
    urls: list[str], concurrency: int,
    run: Callable[[list[str], int, int], Coroutine[object, object, None]],
) -> int:
    """`run(share_of_urls, limit, index)` in as many forked processes as bulkfetch would fork,
    the concurrency shared among them; 1 if any of them failed."""
    procs = min(cores(), MAX_WORKERS, concurrency)
    children = []
    for i in range(procs):
        pid = os.fork()
        if pid == 0:
            limit = concurrency // procs + (i < concurrency % procs)
            asyncio.run(run(urls[i::procs], limit, i))
            os._exit(0)
        children.append(pid)
    failed = [pid for pid in children if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]
    return 1 if failed else 0


def main() -> None:
    urls = Path(sys.argv[1]).read_text(encoding="utf-8").split()
    sys.exit(in_processes(urls, int(sys.argv[2]), lambda share, limit, _: fetch_all(share, limit)))


if __name__ == "__main__":
    main()
