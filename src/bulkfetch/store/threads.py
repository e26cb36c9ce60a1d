"""The threads that touch the disk, so that the event loop never waits on it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

WRITER_THREADS = 4
IOV_MAX = 1024

T = TypeVar("T")


class Writers:
    """A small thread pool whose jobs always run to their end."""

    def __init__(self, threads: int = WRITER_THREADS) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="bulkfetch-writer")
        self._batch: list[tuple[Callable[..., object], tuple[object, ...], asyncio.Future[Any]]]
        self._batch = []

    async def run_batched(self, fn: Callable[..., T], *args: object) -> T:
        """As `run`, but jobs asked for in one turn of the event loop go to one thread
        together: one hand-off (and one wake-up of the loop) for many small files instead of
        one each. Each job's exception stays its own."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._send_batch)
        self._batch.append((fn, args, fut))
        return await settle(fut, defer_cancel=True)

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        job = self.submit(_run_all, [(fn, args) for fn, args, _ in batch])

        def deliver(done: asyncio.Future[list[tuple[bool, Any]]]) -> None:
            if done.cancelled() or done.exception() is not None:
                outcomes = [(False, done.exception() or asyncio.CancelledError())] * len(batch)
            else:
                outcomes = done.result()
            for (_, _, fut), (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

        job.add_done_callback(deliver)

    def submit(self, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn` on a writer thread to its end and return its result, even when the task
        is cancelled meanwhile: the cancellation then comes at the task's next suspension."""
        return await settle(self.submit(fn, *args), defer_cancel=True)

    def close(self) -> None:
        """Join the threads; every job has settled by now, so this does not wait on the disk."""
        self._executor.shutdown(wait=True)


def _run_all(
    jobs: list[tuple[Callable[..., object], tuple[object, ...]]],
) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    for fn, args in jobs:
        try:
            outcomes.append((True, fn(*args)))
        except Exception as exc:
            outcomes.append((False, exc))
    return outcomes


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


def write_all(fd: int, chunks: Sequence[bytes | bytearray]) -> None:
    """writev until every byte is down: a regular file may still take less than asked."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    while views:
        done = os.writev(fd, views[:IOV_MAX])
        i = 0
        while i < len(views) and done >= len(views[i]):
            done -= len(views[i])
            i += 1
        views = views[i:]
        if done:
            views[0] = views[0][done:]
