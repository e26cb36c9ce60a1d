"""The threads that touch the disk, so that the event loop never waits on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

WRITER_THREADS = 4

T = TypeVar("T")


class Writers:
    """A small thread pool whose jobs always run to their end."""

    def __init__(self, threads: int = WRITER_THREADS) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="bulkfetch-writer")

    def submit(self, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn` on a writer thread to its end, whatever happens to the calling task."""
        return await settle(self.submit(fn, *args))

    def close(self) -> None:
        """Join the threads; every job has settled by now, so this does not wait on the disk."""
        self._executor.shutdown(wait=True)


async def settle(fut: asyncio.Future[T]) -> T:
    """Await a thread job to its end; a cancellation that came meanwhile is delivered after.

    Cancelling the await would not stop the thread, and cleanup that ran before the job ended
    would race it (a temp file created after it was removed, a rename nobody reports).
    """
    interrupted = False
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            interrupted = True
    if interrupted and (task := asyncio.current_task()) is not None:
        task.cancel()
    return fut.result()
