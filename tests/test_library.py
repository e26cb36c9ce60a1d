"""The library as a program embeds it: its signals left alone, stopped from another thread,
Results read off the loop (a callback, `stream`) at the reader's pace, async iterables, the
`bulkfetch` logger, and a help that lists what a caller may pass and catch."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import bulkfetch
from bulkfetch.api import Options
from bulkfetch.show import relay
from tests.helpers import MANIFEST, assert_tidy, cli_env, read_manifest, wait_for
from tests.server import Server


class CallbackBroke(Exception):
    pass


def test_the_hosts_handlers_stay_during_and_after_a_run(server: Server, tmp_path: Path) -> None:
    """fetch() on the main thread installs nothing process-wide: a service's own SIGTERM
    handler is there while the run goes and after it."""
    def handler(signum: int, frame: object) -> None: ...

    before = signal.signal(signal.SIGTERM, handler)
    try:
        during: list[object] = []
        bulkfetch.fetch([[server.url("/bytes/10")]], tmp_path / "out",
                        on_result=lambda r: during.append(signal.getsignal(signal.SIGTERM)))
        assert during == [handler]
        assert signal.getsignal(signal.SIGTERM) is handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, before)


SCRIPT = """
import atexit, signal, sys, threading, bulkfetch
from bulkfetch.errors import Interrupted, Terminated
stop = threading.Event()
calls = []
def handler(signum, frame):  # the host's own: here, it ends the run through `stop`
    calls.append(signum)
    stop.set()
signal.signal(signal.SIGTERM, handler)
atexit.register(lambda: print("atexit ran", flush=True))
print("start", flush=True)
try:
    summary = bulkfetch.fetch([[{url!r}]], {out!r}, stop=stop, handle_signals={handle!r})
    print("stopped", summary.interrupted, summary.stopped)
except Interrupted as exc:
    print("interrupted", exc.summary.interrupted, isinstance(exc, KeyboardInterrupt))
except Terminated as exc:
    print("terminated", exc.summary.interrupted, exc.code)
print("handler kept", signal.getsignal(signal.SIGTERM) is handler, len(calls))
{after}
"""


@pytest.mark.parametrize(("handle", "signum", "said"), [
    # Left to the host: SIGINT still stops cleanly (asyncio's way), SIGTERM is the host's.
    (False, signal.SIGINT, "interrupted 1 True"),
    (False, signal.SIGTERM, "stopped 1 True"),
    # Asked for: the CLI's behaviour, and the host's handler put back.
    (True, signal.SIGINT, "interrupted 1 True"),
    (True, signal.SIGTERM, "terminated 1 143"),
])
def test_signals_are_the_hosts_unless_asked(
    server: Server, tmp_path: Path, handle: bool, signum: signal.Signals, said: str
) -> None:
    url = server.url("/stall/30?before=1000")
    proc = _start(SCRIPT.format(url=url, out=str(tmp_path / "out"), handle=handle, after=""))
    wait_for(lambda: server.stats.count("/stall/30") == 1)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=20)
    calls = int(not handle and signum == signal.SIGTERM)
    assert out.splitlines() == [said, f"handler kept True {calls}", "atexit ran"]
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert [row["status"] for row in rows.values()] == ["interrupted"]


def test_a_second_signal_goes_where_it_went_before(server: Server, tmp_path: Path) -> None:
    """With handle_signals=True the first SIGTERM stops the run and puts the host's handler
    back: a second reaches the host, and the process is never cut short by os._exit."""
    url = server.url("/stall/30?before=1000")
    # The script stays until its handler has seen the second (else it may land as the
    # interpreter exits, when every handler is the default again).
    wait = "import time\nfor _ in range(500):\n    time.sleep(0.01) if not calls else None"
    proc = _start(SCRIPT.format(url=url, out=str(tmp_path / "out"), handle=True,
                                after=f"{wait}\nprint('host saw', calls)"))
    wait_for(lambda: server.stats.count("/stall/30") == 1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert out.splitlines()[0] == "terminated 1 143"
    assert out.splitlines()[-2:] == [f"host saw [{signal.SIGTERM.value}]", "atexit ran"]


def _start(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=cli_env())
    assert proc.stdout is not None and proc.stdout.readline() == "start\n"
    return proc


def test_a_thread_stops_its_run_with_an_event(server: Server, tmp_path: Path) -> None:
    """A caller on another thread ends a run as SIGTERM would: what began gets its line, the
    Summary comes back with `stopped`, and the folder may be used again at once."""
    stop = threading.Event()
    got: list[bulkfetch.Summary] = []
    urls = [server.url("/bytes/100")] + [server.url(f"/stall/30?before=10&n={i}")
                                         for i in range(3)]
    thread = threading.Thread(target=lambda: got.append(bulkfetch.fetch(
        [urls], tmp_path / "out", stop=stop, concurrency=4)))
    thread.start()
    wait_for(lambda: server.stats.count("/stall/30") == 3)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    (summary,) = got
    assert (summary.stopped, summary.interrupted_by, summary.ok, summary.interrupted) == (
        True, None, 1, 3)
    assert summary.manifest == str(tmp_path / "out" / MANIFEST)
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert sorted(row["status"] for row in rows.values()) == ["interrupted"] * 3 + ["ok"]
    assert bulkfetch.fetch([urls[:1]], tmp_path / "out").not_modified + 1  # not locked out


@pytest.mark.parametrize("call", ["fetch", "fetch_async"])
def test_a_callback_that_raises_ends_the_run_with_its_own_exception(
    server: Server, tmp_path: Path, call: str
) -> None:
    """Not an ExceptionGroup, not a RuntimeError from a TaskGroup: the caller's own error,
    after a clean stop."""
    urls = [server.url(f"/bytes/{n}?delay=0.02") for n in range(1, 200)]

    def broken(result: bulkfetch.Result) -> None:
        raise CallbackBroke(result.url)

    with pytest.raises(CallbackBroke) as caught:
        if call == "fetch":
            bulkfetch.fetch([urls], tmp_path / "out", concurrency=4, on_result=broken)
        else:
            asyncio.run(bulkfetch.fetch_async([urls], tmp_path / "out", concurrency=4,
                                              on_result=broken))
    assert any("stopped cleanly" in note for note in caught.value.__notes__)
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert 0 < len(rows) < len(urls)  # it stopped early, and said what became of each begun
    assert_tidy(tmp_path / "out", rows)
    assert bulkfetch.fetch([urls[:1]], tmp_path / "out").total == 1  # the lock was let go


def test_a_slow_callback_never_holds_the_callers_loop(server: Server, tmp_path: Path) -> None:
    """on_result runs on a thread of its own: a callback of 200 ms leaves the loop free (it
    stalled the loop for each call when it ran there)."""
    async def main() -> float:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        ticker = asyncio.create_task(tick())
        urls = [server.url(f"/bytes/{n}") for n in range(1, 6)]
        summary = await bulkfetch.fetch_async([urls], tmp_path / "out",
                                              on_result=lambda r: time.sleep(0.2))
        ticker.cancel()
        assert summary.ok == 5
        return max(gaps)

    assert asyncio.run(main()) < 0.15


def test_stream_gives_results_as_they_come_and_a_summary(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{n}") for n in range(1, 30)]
    results = bulkfetch.stream([urls], tmp_path / "out", concurrency=4)
    seen = [result.url for result in results]
    assert sorted(seen) == sorted(urls)
    assert results.summary is not None and results.summary.ok == len(urls)
    with pytest.raises(bulkfetch.UsageError, match="iterated once"):
        list(results)


def test_a_reader_that_lags_holds_the_run(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back-pressure: while the reader is LAG Results behind, no attempt starts; leaving
    the loop stops the run cleanly, with a Summary."""
    monkeypatch.setattr(relay, "LAG", 20)
    urls = [server.url(f"/bytes/{n}") for n in range(1, 1001)]
    results = bulkfetch.stream([urls], tmp_path / "out", concurrency=4)
    for _ in results:
        time.sleep(1.0)  # the run would fetch the whole list meanwhile
        break
    summary = results.summary
    assert summary is not None and summary.stopped
    # LAG, and what was under way (a slot is free before its file is written): not the 1,000
    # the run fetches meanwhile when nothing holds it.
    assert summary.ok < 3 * 20
    assert server.stats.count("/bytes/") < 3 * 20


def test_async_stream_and_an_async_iterable_source(server: Server, tmp_path: Path) -> None:
    """An async generator is read on the run's loop as it yields: the first Result comes
    long before it ends; `async for` over the Results, then the Summary."""
    async def slowly() -> AsyncIterator[str]:
        for n in range(1, 21):
            yield server.url(f"/bytes/{n}")
            await asyncio.sleep(0.05)

    async def main() -> tuple[float, int, bulkfetch.Summary | None]:
        started = time.monotonic()
        first = 0.0
        results = bulkfetch.stream([slowly()], tmp_path / "out")
        count = 0
        async for _ in results:
            first = first or time.monotonic() - started
            count += 1
        return first, count, results.summary

    first, count, summary = asyncio.run(main())
    assert count == 20 and summary is not None and summary.ok == 20
    assert first < 0.4  # the generator takes 1 s in all


def test_leaving_an_async_stream_stops_the_run_and_its_source(
    server: Server, tmp_path: Path
) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield server.url(f"/bytes/{pulled % 50 + 1}?n={pulled}&delay=0.05")

    async def main() -> bulkfetch.Summary | None:
        async with bulkfetch.stream([endless()], tmp_path / "out", concurrency=2) as results:
            async for _ in results:
                break
        return results.summary

    summary = asyncio.run(main())
    assert summary is not None and summary.stopped and summary.ok >= 1
    after = pulled
    time.sleep(0.3)
    assert pulled == after < 20_000
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert_tidy(tmp_path / "out", rows)


def test_a_cancelled_run_leaves_no_thread_pulling(server: Server, tmp_path: Path) -> None:
    """A blocking iterator: the run still stops at a cancel; nothing more is pulled."""
    gate = threading.Event()
    pulled: list[int] = []

    def blocking() -> Iterator[str]:
        yield server.url("/bytes/5")
        pulled.append(1)
        gate.wait(5)  # a queue that never fills again
        pulled.append(2)
        yield server.url("/bytes/6")

    async def main() -> None:
        task = asyncio.create_task(bulkfetch.fetch_async([blocking()], tmp_path / "out"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 3
    gate.set()
    time.sleep(0.2)
    assert pulled == [1, 2]  # the one next() under way returned; no further one was made
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert [row["status"] for row in rows.values()] == ["ok"]


def test_retries_and_notices_go_to_the_bulkfetch_logger(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = server.url("/flaky/log/1/503")
    same = server.url("/bytes/7")
    caplog.set_level(logging.DEBUG, logger="bulkfetch")
    bulkfetch.fetch([[flaky, (same, "a.bin"), (same, "b.bin")]], tmp_path / "out",
                    backoff_s=0.01)
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("bulkfetch", logging.DEBUG, f"attempt 2: {flaky}") in records
    assert any(level == logging.DEBUG and "attempt 1 failed (HTTP 503" in message
               for _, level, message in records)
    assert any(level == logging.WARNING and "listed again with another NAME" in message
               for _, level, message in records)


def test_help_lists_every_option_and_the_errors() -> None:
    doc = bulkfetch.fetch.__doc__ or ""
    flat = " ".join(doc.split())
    for name in Options.__annotations__:
        assert name in flat, name
    for error in ("UsageError", "LockedOut", "SourceError", "RecordFailed", "Interrupted",
                  "Terminated"):
        assert error in flat
    assert set(bulkfetch.__all__) <= set(dir(bulkfetch))
    for name in bulkfetch.__all__:
        assert getattr(bulkfetch, name) is not None


STREAM_SCRIPT = """
import bulkfetch
print("start", flush=True)
try:
    for result in bulkfetch.stream([[{url!r}]], {out!r}):
        print("result", result.status, flush=True)
except bulkfetch.Interrupted as exc:
    print("interrupted", exc.summary.interrupted, isinstance(exc, KeyboardInterrupt))
"""


def test_ctrl_c_while_a_stream_waits_is_interrupted_with_a_summary(
    server: Server, tmp_path: Path
) -> None:
    url = server.url("/stall/30?before=1000")
    proc = _start(STREAM_SCRIPT.format(url=url, out=str(tmp_path / "out")))
    wait_for(lambda: server.stats.count("/stall/30") == 1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert out.splitlines() == ["interrupted 1 True"]
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert [row["status"] for row in rows.values()] == ["interrupted"]
