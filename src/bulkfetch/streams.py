"""A run's Results as an iterator: `for` in plain code, `async for` on a running loop.

    for result in bulkfetch.stream(["urls.txt"], "out/", concurrency=50):
        print(result.status, result.url)

    async for result in bulkfetch.stream(sources, "out/"):
        await index(result)

The run goes at the reader's pace: while the reader lags LAG Results behind, no new URL is
taken in (what is under way finishes). Leaving the loop early (`break`, an exception, a
cancel) stops the run cleanly, as SIGTERM would: interrupted lines for what had begun, the
manifest and the state flushed, the lock released, before the loop is left.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Unpack

from bulkfetch import api
from bulkfetch.errors import Interrupted, UsageError
from bulkfetch.models import Result, Settings, Shard, ShardBy, Summary
from bulkfetch.schedule.runner import StopToken
from bulkfetch.show.relay import LoopRelay, Relay


def stream(
    sources: list[api.SourceSpec] | tuple[api.SourceSpec, ...],
    out: str | os.PathLike[str],
    *,
    shard: tuple[int, int] | Shard | None = None,
    shard_by: ShardBy = ShardBy.HOST,
    stop: StopToken | None = None,
    **options: Unpack[api.Options],
) -> Stream:
    """The Results of a run over `sources` into `out`, as they are decided. The arguments,
    the options and the errors are `fetch`'s (checked here, at the call); the run starts
    when the iteration does, and the Summary is `.summary` once it is over."""
    settings = api.settings_for(sources, out, shard=shard, shard_by=shard_by, options=options)
    return Stream(settings, sources, stop)


class Stream:
    """Iterate once: with `for` (the run on a thread of its own, with its own loop) or with
    `async for` (the run a task on the running loop). To leave an `async for` early, hold
    the stream in `async with`: its end waits for the clean stop (Python closes an async
    generator left by `break` only later, when the loop gets to it)."""

    def __init__(self, settings: Settings, sources: api.Sources, stop: StopToken | None,
    ) -> None:
        self._settings = settings
        self._sources = sources
        self._stop = stop
        self._begun = False
        # Weakly: a `for` left by `break` drops the last reference, and that closes it at once.
        self._sync: weakref.ref[Generator[Result]] | None = None
        self._async: AsyncGenerator[Result] | None = None
        self.summary: Summary | None = None  # once the iteration is over

    def _begin(self) -> None:
        if self._begun:
            raise UsageError("a bulkfetch.stream is iterated once")
        self._begun = True

    def __iter__(self) -> Iterator[Result]:
        self._begin()
        results = self._results_sync()
        self._sync = weakref.ref(results)
        return results

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._sync is not None and (results := self._sync()) is not None:
            results.close()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._async is not None:
            await self._async.aclose()

    def _results_sync(self) -> Generator[Result]:
        relay = Relay()
        ran: list[Summary | BaseException] = []
        thread = threading.Thread(target=self._run, args=(relay, ran), daemon=True,
                                  name="bulkfetch-stream")
        thread.start()
        interrupted = False
        try:
            while (result := relay.get()) is not None:
                yield result
        except KeyboardInterrupt:  # Ctrl-C while waiting for the next Result: as `fetch`
            interrupted = True
        finally:
            relay.leave()  # nothing, when the run is over; else it stops, cleanly
            thread.join()
            self.summary = _summary(ran[0])
        if interrupted and self.summary is not None:
            raise Interrupted(self.summary)
        if interrupted:
            raise KeyboardInterrupt
        _raise(ran[0])

    def _run(self, relay: Relay, ran: list[Summary | BaseException]) -> None:
        try:
            extras = api.prepare(self._settings, self._sources)
            ran.append(api.execute(
                self._settings, self._sources, api.Library(relay), extras=extras,
                stops=api.stop_tokens(self._stop, relay), room=relay))
        except BaseException as exc:  # raised on the reader's thread
            ran.append(exc)
        finally:
            relay.end()

    def __aiter__(self) -> AsyncIterator[Result]:
        self._begin()
        self._async = self._results()
        return self._async

    async def _results(self) -> AsyncGenerator[Result]:
        relay = LoopRelay()
        task = asyncio.create_task(self._run_async(relay))
        try:
            while (result := await relay.get()) is not None:
                yield result
        finally:
            relay.leave()  # nothing, when the run is over; else it stops, cleanly
            await asyncio.wait([task])  # on a cancel too: the stop takes a moment
            self.summary = None if task.cancelled() else _summary(task.exception()
                                                                  or task.result())
        _raise(task.exception() or task.result())

    async def _run_async(self, relay: LoopRelay) -> Summary:
        try:
            return await api.run_async(self._settings, self._sources, api.Library(relay),
                                       stops=api.stop_tokens(self._stop, relay), room=relay)
        finally:
            relay.end()


def _summary(outcome: Summary | BaseException) -> Summary | None:
    return outcome if isinstance(outcome, Summary) else None


def _raise(outcome: Summary | BaseException) -> None:
    """What the run raised; after a signal, what `fetch` raises."""
    if isinstance(outcome, BaseException):
        raise outcome
    api.raise_for(outcome)
