"""Retry policy, pure: which answers are worth another attempt, and how long to wait first."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

Uniform = Callable[[float, float], float]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, never shorter than what the server asked for."""

    retries: int = 3
    base_s: float = 0.5
    cap_s: float = 30.0
    retry_after_cap_s: float = 300.0

    def backoff(self, attempt: int, *, uniform: Uniform = random.uniform) -> float:
        """Seconds before attempt `attempt + 1`: half fixed, half random ("equal jitter")."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + uniform(0, ceiling / 2)

    def delay(
        self, attempt: int, *, retry_after_s: float | None, uniform: Uniform = random.uniform
    ) -> float:
        """The wait before the next attempt: the backoff, or longer if the server asked."""
        return max(self.backoff(attempt, uniform=uniform), retry_after_s or 0.0)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT, even when the zone is missing
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
