"""Pure helpers for the headers of an answer: dates and Retry-After, as urllib3 reads them."""

from __future__ import annotations

import email.message
import email.utils
import re
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
    # email.utils reads any year under 100 as two digits ("0001" becomes 2001); only the
    # obsolete rfc850-date has those. A four-digit year must be the year read.
    four = _FOUR_DIGITS.search(value)
    if four is not None and int(four.group(1)) != when.year:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_FOUR_DIGITS = re.compile(r"(?<![\d:])(\d{4})(?![\d:])")


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


def disposition_filename(value: str | None) -> str | None:
    """The file name a Content-Disposition gives: `filename*` (RFC 5987, decoded by its
    charset) before `filename` (RFC 6266 4.3), as sent: the caller makes it safe. Parsed by
    the standard library's RFC 2231 code, which warns of nothing: aiohttp's parser reports a
    malformed header as a warning holding the header raw, and that would reach stderr."""
    if not value:
        return None
    message = email.message.Message()
    message["Content-Disposition"] = value
    try:
        params = message.get_params(header="content-disposition") or []
    except (ValueError, LookupError):
        return None
    plain = starred = None
    for name, param in params[1:]:
        if name != "filename":
            continue
        if isinstance(param, tuple):  # filename*: (charset, language, value)
            starred = email.utils.collapse_rfc2231_value(param)
        else:
            plain = param
    return starred or plain or None
