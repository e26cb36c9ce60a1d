"""Retry policy, pure: which attempts are worth another, how long to wait first, and when the
whole host must wait. Every such decision is `RetryPolicy.decide` (urllib3's `Retry` shape)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from bulkfetch.models import Attempt, Failure

Uniform = Callable[[float, float], float]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
PAUSING_STATUSES = frozenset({429, 503})  # with Retry-After: the host, not the URL, is busy


@dataclass(frozen=True, slots=True)
class Verdict:
    """What follows an attempt."""

    retry_in_s: float | None = None  # None: there is no next attempt
    pause_host_s: float | None = None  # nothing starts on the host for this long
    error: str | None = None  # the URL's final error; None with a retry, or on success
    give_up_host: str | None = None  # why the host's other URLs fail now, without a request


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, never shorter than what the server asked for."""

    retries: int = 3
    base_s: float = 0.5
    cap_s: float = 30.0
    retry_after_cap_s: float = 300.0  # --max-retry-after

    def decide(self, attempt: Attempt, attempts: int, *, uniform: Uniform = random.uniform
               ) -> Verdict:
        """The verdict after `attempts` attempts, the last of which is `attempt`. A pause the
        server asked for holds its host even when this URL gives up; a host that asks for
        longer than the cap is given up on (its URLs would only hold the run)."""
        error = attempt.error
        if error is None:
            return Verdict()
        after = attempt.retry_after_s
        pausing = after is not None and attempt.http_status in PAUSING_STATUSES
        if after is not None and after > self.retry_after_cap_s:
            asked = (f"the host asked to wait {after:,.0f}s (Retry-After), more than "
                     f"--max-retry-after {self.retry_after_cap_s:g}s")
            return Verdict(error=f"{error}; {asked}", give_up_host=asked if pausing else None)
        pause = after if pausing else None
        if not self.retryable(attempt):
            return Verdict(pause_host_s=pause, error=error)
        if attempts > self.retries:
            plural = "s" if attempts != 1 else ""
            return Verdict(pause_host_s=pause, error=f"{error} (gave up after {attempts} "
                           f"attempt{plural})")
        return Verdict(retry_in_s=self.delay(attempts, retry_after_s=after, uniform=uniform),
                       pause_host_s=pause)

    @staticmethod
    def retryable(attempt: Attempt) -> bool:
        if attempt.failure is Failure.STATUS:
            return attempt.http_status in RETRYABLE_STATUSES
        return attempt.failure in (Failure.CONNECT, Failure.TRANSFER)

    def backoff(self, attempt: int, *, uniform: Uniform = random.uniform) -> float:
        """Seconds before attempt `attempt + 1`: half fixed, half random ("equal jitter")."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + uniform(0, ceiling / 2)

    def delay(
        self, attempt: int, *, retry_after_s: float | None, uniform: Uniform = random.uniform
    ) -> float:
        """The wait before the next attempt: the backoff, or longer if the server asked."""
        return max(self.backoff(attempt, uniform=uniform), retry_after_s or 0.0)

