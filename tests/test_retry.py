"""Retry policy: backoff bounds and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bulkfetch.http.headers import parse_retry_after
from bulkfetch.models import Attempt, Failure
from bulkfetch.schedule.retry import RetryPolicy, Verdict

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


def fail(status: int | None = None, failure: Failure = Failure.STATUS,
         retry_after_s: float | None = None) -> Attempt:
    return Attempt(http_status=status, error="E", failure=failure, retry_after_s=retry_after_s)


@pytest.mark.parametrize(("attempt", "retried", "paused"), [
    (fail(503), True, None), (fail(500), True, None), (fail(408), True, None),
    (fail(429, retry_after_s=5), True, 5.0), (fail(503, retry_after_s=7), True, 7.0),
    (fail(500, retry_after_s=7), True, None),  # only 429 and 503 pause the host
    (fail(404), False, None), (fail(403), False, None),
    (fail(407), False, None),  # a proxy refusing credentials: asking again could lock them
    (fail(None, Failure.CONNECT), True, None), (fail(None, Failure.TRANSFER), True, None),
    (fail(None, Failure.TLS), False, None), (fail(None, Failure.FINAL), False, None),
])
def test_which_attempts_are_retried_and_which_pause_the_host(
    attempt: Attempt, retried: bool, paused: float | None
) -> None:
    verdict = RetryPolicy(retries=3).decide(attempt, 1, uniform=lambda a, b: a)
    assert (verdict.retry_in_s is not None) is retried
    assert verdict.pause_host_s == paused
    assert (verdict.error is None) is retried


@pytest.mark.parametrize(("retries", "error"), [
    (0, "E (gave up after 1 attempt)"), (2, "E (gave up after 3 attempts)"),
])
def test_the_last_attempt_says_how_many_were_made(retries: int, error: str) -> None:
    verdict = RetryPolicy(retries=retries).decide(fail(503), retries + 1)
    assert verdict.retry_in_s is None and verdict.error == error


def test_a_success_needs_no_verdict() -> None:
    assert RetryPolicy().decide(Attempt(http_status=200), 1) == Verdict()


@pytest.mark.parametrize(("attempt", "host_given_up"), [
    (fail(429, retry_after_s=600), True),
    (fail(503, retry_after_s=301), True),
    (fail(500, retry_after_s=600), False),  # no pause asked of the host: only this URL fails
])
def test_a_wait_beyond_the_cap_fails_at_once(attempt: Attempt, host_given_up: bool) -> None:
    """No pause of 300 s for nothing: the URL fails now, and with a 429 or 503 the host's
    other URLs too (the scheduler ends them), saying what the host asked for."""
    verdict = RetryPolicy(retry_after_cap_s=300).decide(attempt, 1)
    assert verdict.retry_in_s is None and verdict.pause_host_s is None
    assert verdict.error is not None and "more than --max-retry-after 300s" in verdict.error
    assert (verdict.give_up_host is not None) is host_given_up


@pytest.mark.parametrize(("value", "year"), [
    ("Sun, 06 Nov 1994 08:49:37 GMT", 1994),  # IMF-fixdate
    ("Sunday, 06-Nov-94 08:49:37 GMT", 1994),  # rfc850-date: two digits, read as RFC 9110 says
    ("Sun Nov  6 08:49:37 1994", 1994),  # asctime
    ("Mon, 01 Jan 0001 00:00:00 GMT", None),  # not 2001, as email.utils would have it
    ("Mon, 01 Jan 0099 00:00:00 GMT", None),
    ("not a date", None),
])
def test_http_dates_keep_their_year(value: str, year: int | None) -> None:
    from bulkfetch.http.headers import http_date

    when = http_date(value)
    assert (when.year if when else None) == year
