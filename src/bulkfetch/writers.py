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
        """Run `fn` on a writer thread to its end and return its result, even when the task
        is cancelled meanwhile: the cancellation then comes at the task's next suspension."""
        return await settle(self.submit(fn, *args), defer_cancel=True)

    def close(self) -> None:
        """Join the threads; every job has settled by now, so this does not wait on the disk."""
        self._executor.shutdown(wait=True)


async def settle(fut: asyncio.Future[T], *, defer_cancel: bool = False) -> T:
    """Await a thread job to its end, even through a cancellation of the awaiting task.

    Cancelling the await would not stop the thread, and cleanup that ran before the job ended
    would race it (a temp file created after it was removed, a rename nobody reports). A
    cancellation that came meanwhile is raised once the job has ended, or, with
    `defer_cancel`, left for the task's next suspension so that the result is not lost.
    """
    interrupted = False
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        if not defer_cancel:
            raise asyncio.CancelledError
        if (task := asyncio.current_task()) is not None:
            task.cancel()
    return fut.result()
