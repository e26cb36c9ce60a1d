"""Request pacing: a global and a per-host rate, and host-wide pauses a server asked for.

Rates use virtual scheduling (GCRA): each request reserves the next free instant, so the cost
is O(1) per request and the long-run rate is exact. A 429 or 503 with Retry-After pauses the
whole host, not just the URL that got it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]


class Pacer:
    def __init__(
        self,
        *,
        rate: float | None = None,
        host_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._interval = 1 / rate if rate else 0.0
        self._host_interval = 1 / host_rate if host_rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._host_next: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}

    @property
    def active(self) -> bool:
        """False while there is nothing to wait for (then callers skip `wait` altogether)."""
        return bool(self._interval or self._host_interval or self._paused_until)

    def pause(self, host: str, seconds: float) -> None:
        """The server asked for a break: no request to `host` for `seconds`."""
        until = self._clock() + seconds
        if until > self._paused_until.get(host, 0.0):
            self._paused_until[host] = until

    async def wait(self, host: str) -> None:
        """Wait for this host's pause, then for a slot under both rates."""
        now = self._clock()
        start = max(
            now,
            self._paused_until.get(host, 0.0),
            self._host_next.get(host, 0.0) if self._host_interval else 0.0,
            self._next,
        )
        if self._host_interval:
            self._host_next[host] = start + self._host_interval
        if self._interval:
            self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)
