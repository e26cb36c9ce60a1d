"""Pure helpers for the headers of an answer: dates and Retry-After, as urllib3 reads them."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def http_date(value: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110 5.6.7) as an aware datetime; None if missing or unusable. A date
    without a zone is GMT, as every HTTP-date is."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = http_date(value)
    if when is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
