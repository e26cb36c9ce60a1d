"""The library API: bulkfetch.fetch from sync code, fetch_async inside a running loop; the
same guarantees as the CLI (lock, manifest, names, checksums)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import bulkfetch
from bulkfetch.errors import LockedOut, UsageError
from bulkfetch.store.lock import hold
from tests.helpers import MANIFEST, assert_tidy, read_manifest, write_list
from tests.server import Server, body


def test_fetch_from_files_iterables_and_pairs(server: Server, tmp_path: Path) -> None:
    listed = write_list(tmp_path / "u", [server.url("/bytes/10")])
    digest = hashlib.sha256(body("/bytes/30", 30)).hexdigest()
    pairs = [(server.url("/bytes/20"), "named/twenty.bin")]
    urls = iter([server.url("/bytes/30"), server.url("/status/404")])
    seen: list[str] = []
    summary = bulkfetch.fetch([listed, pairs, urls], tmp_path / "out", concurrency=4,
                              retries=0, on_result=lambda r: seen.append(r.status))
    assert (summary.ok, summary.failed) == (3, 1) and sorted(seen) == ["failed", "ok", "ok", "ok"]
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert rows[pairs[0][0]]["path"] == "named/twenty.bin"
    assert rows[server.url("/bytes/30")]["sha256"] == digest
    assert_tidy(tmp_path / "out", rows)


def test_fetch_async_runs_on_the_callers_loop(server: Server, tmp_path: Path) -> None:
    async def main() -> tuple[bulkfetch.Summary, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beside = asyncio.create_task(ticker())
        urls = [server.url(f"/bytes/{100 + n}?delay=0.2") for n in range(4)]
        summary = await bulkfetch.fetch_async([urls], tmp_path / "out", concurrency=4)
        beside.cancel()
        return summary, ticks

    summary, ticks = asyncio.run(main())
    assert summary.ok == 4
    assert ticks >= 10  # the caller's own task kept running: the loop was never blocked


def test_fetch_inside_a_running_loop_says_to_await_fetch_async(tmp_path: Path) -> None:
    async def main() -> None:
        bulkfetch.fetch([["http://127.0.0.1:9/"]], tmp_path)

    with pytest.raises(UsageError, match="fetch_async"):
        asyncio.run(main())


def test_an_unknown_option_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="concurency"):
        bulkfetch.fetch([["http://127.0.0.1:9/"]], tmp_path, concurency=4)


def test_the_lock_holds_for_the_library_too(tmp_path: Path) -> None:
    with hold(tmp_path / ".bulkfetch" / "lock"), pytest.raises(LockedOut):
        bulkfetch.fetch([["http://127.0.0.1:9/"]], tmp_path)


def test_an_iterable_streams_as_it_yields(server: Server, tmp_path: Path) -> None:
    """A generator yielding a URL every 50 ms: the first result comes long before it ends
    (it came only at exhaustion, or after 1,000 items, before)."""
    def slowly() -> Iterator[str]:
        for i in range(20):
            yield server.url(f"/bytes/{200 + i}")
            time.sleep(0.05)

    started = time.monotonic()
    firsts: list[float] = []
    summary = bulkfetch.fetch([slowly()], tmp_path / "out",
                              on_result=lambda r: firsts.append(time.monotonic() - started))
    assert summary.ok == 20
    assert firsts[0] < 0.3  # the generator takes 1 s in all


def test_a_stopped_run_pulls_no_more_from_the_iterable(server: Server, tmp_path: Path) -> None:
    """Cancelled (here by a timeout around fetch_async), the run takes no further item from
    the caller's generator."""
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield server.url(f"/bytes/{pulled % 50 + 1}?n={pulled}&delay=0.05")

    async def main() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await bulkfetch.fetch_async([endless()], tmp_path / "out", concurrency=2)

    asyncio.run(main())
    after = pulled
    time.sleep(0.3)
    assert pulled == after
    assert after < 20_000  # bounded read-ahead (the window, 10,000, and a few batches)
