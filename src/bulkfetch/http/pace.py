"""--limit-rate: body bytes per second for the whole run, every transfer and every worker
process together.

One virtual clock (GCRA, as the frontier paces requests): each chunk read books the moment at
which its bytes fit under the rate, and its reader waits until then before it reads the next.
Bookings are taken in order, so transfers share the rate in turn and none starves; while a
reader waits, aiohttp stops reading its socket (the buffer is one chunk), so the sender is held
by TCP, not by our memory. The clock lives in shared memory made before the workers are forked,
so the cap holds across processes as exactly as `-c` does: a booking is a few arithmetic
operations under a process-shared lock, never held across an await.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time

BURST_S = 0.05  # the cap allows this much of a second's bytes at once, after a pause


class BytePace:
    def __init__(self, bytes_per_s: float) -> None:
        self.rate = bytes_per_s
        context = multiprocessing.get_context("fork")
        # The theoretical arrival time: when the bytes booked so far will all have fitted.
        self._due = context.Value("d", 0.0, lock=True)

    def book(self, nbytes: int, now: float) -> float:
        """Book `nbytes` at `now` (time.monotonic, the same in every process on Linux); how
        long to wait before reading on."""
        with self._due.get_lock():
            due: float = max(self._due.value, now)  # no credit for a pause beyond the burst
            self._due.value = due + nbytes / self.rate
        return max(0.0, due - now - BURST_S)

    async def take(self, nbytes: int) -> None:
        delay = self.book(nbytes, time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)
