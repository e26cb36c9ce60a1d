"""Retry policy: backoff bounds and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bulkfetch.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    (" 3 ", 3.0),
    ("0", 0.0),
    ("Sun, 22 Nov 2026 12:00:30 GMT", 30.0),
    ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),   # in the past: no wait
    ("-5", None),                              # not delay-seconds, not a date
    ("1.5", None),                             # delay-seconds is a whole number
    ("soon", None),
    ("", None),
    (None, None),
])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(("attempt", "low", "high"), [(1, 0.25, 0.5), (2, 0.5, 1.0),
                                                      (3, 1.0, 2.0), (10, 15.0, 30.0)])
def test_backoff_grows_with_jitter_and_a_cap(attempt: int, low: float, high: float) -> None:
    policy = RetryPolicy()
    assert policy.backoff(attempt, uniform=lambda a, b: a) == low
    assert policy.backoff(attempt, uniform=lambda a, b: b) == high


def test_retry_after_wins_when_longer() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, retry_after_s=7.0, uniform=lambda a, b: b) == 7.0
    assert policy.delay(3, retry_after_s=0.1, uniform=lambda a, b: b) == 2.0


def test_retryable_statuses() -> None:
    assert {408, 429, 500, 502, 503, 504} == RETRYABLE_STATUSES
