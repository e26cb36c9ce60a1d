"""Results to the caller's own code, off the run's event loop, in the order they are decided.

A library caller reads Results on another thread (an `on_result` callback's thread, or the
caller's own `for` over `bulkfetch.stream`) or in a task of its own (`async for`). Either way
the run's loop only appends to a queue and never waits on user code; the other way round,
a reader that lags holds the start of new attempts (the scheduler's Room), so memory stays bounded
and the run slows to the reader's pace instead of queueing the whole list. A reader that
leaves (it broke off, its callback raised) is a stop token: the run ends as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

from bulkfetch.models import Result

LAG = 1_000  # Results decided and not yet read before the run takes in no new URL
LAG_POLL_S = 0.01  # how often a held intake looks again


class _End:
    pass


_END = _End()


class Relay:
    """Results from the run's loop to a reader on another thread."""

    def __init__(self, lag: int | None = None) -> None:
        self._queue: queue.SimpleQueue[Result | _End] = queue.SimpleQueue()
        self._lag = lag or LAG
        self._left = threading.Event()
        self.error: BaseException | None = None  # what the reader's callback raised

    # The run's side (its loop).

    def put(self, result: Result) -> None:
        self._queue.put(result)

    def full(self) -> bool:
        """The reader lags `lag` Results behind, or has left (then nothing more starts: the
        run is being stopped)."""
        return self._left.is_set() or self._queue.qsize() >= self._lag

    async def wait(self) -> None:
        """Returns once the reader is within `lag` Results of the run."""
        # A poll: the reader is on another thread, and the loop may be gone when it reads.
        while self.full():  # noqa: ASYNC110
            await asyncio.sleep(LAG_POLL_S)

    def is_set(self) -> bool:
        """The stop token: the reader has left."""
        return self._left.is_set()

    def end(self) -> None:
        """No more Results (from any thread, once the run is over)."""
        self._queue.put(_END)

    # The reader's side.

    def get(self) -> Result | None:
        """The next Result; None once the run is over. Blocks."""
        item = self._queue.get()
        return None if isinstance(item, _End) else item

    def leave(self, error: BaseException | None = None) -> None:
        """The reader reads no more; `error`, what made it stop, goes to the caller."""
        if error is not None and self.error is None:
            self.error = error
        self._left.set()

    def serve(self, callback: Callable[[Result], None]) -> threading.Thread:
        """Call `callback` with each Result on a thread of its own, in order; the first
        exception it raises ends the run, and is kept in `error`."""
        def read() -> None:
            while (result := self.get()) is not None:
                try:
                    callback(result)
                except BaseException as exc:  # the caller's, raised there
                    self.leave(exc)
                    return

        thread = threading.Thread(target=read, name="bulkfetch-on-result", daemon=True)
        thread.start()
        return thread


class LoopRelay:
    """Results from the run to a reader on the same loop (`async for`): the run is a task
    beside the reader's, and never awaits it."""

    def __init__(self, lag: int | None = None) -> None:
        self._queue: asyncio.Queue[Result | _End] = asyncio.Queue()
        self._lag = lag or LAG
        self._room = asyncio.Event()
        self._left = False

    def put(self, result: Result) -> None:
        self._queue.put_nowait(result)

    def full(self) -> bool:
        return self._left or self._queue.qsize() >= self._lag

    def is_set(self) -> bool:
        """The stop token: the reader has left."""
        return self._left

    def leave(self) -> None:
        self._left = True

    async def wait(self) -> None:
        while self.full():
            self._room.clear()
            await self._room.wait()

    def end(self) -> None:
        self._queue.put_nowait(_END)

    async def get(self) -> Result | None:
        item = await self._queue.get()
        if self._queue.qsize() < self._lag // 2:
            self._room.set()
        return None if isinstance(item, _End) else item
