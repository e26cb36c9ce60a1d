"""Secrets never reach a screen, a log or the manifest: URL passwords are masked everywhere."""

from __future__ import annotations

import datetime
import re
import time

from bulkfetch.models import Result, Status

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s@:]*):[^/\s@]*@")


def redact(text: str) -> str:
    """`https://user:secret@host/x` -> `https://user:***@host/x`, anywhere in `text`."""
    if "@" not in text:  # nearly every URL: skip the regex (it ran once per result)
        return text
    return _USERINFO.sub(r"\g<scheme>\g<user>:***@", text)


def redacted_result(
    url: str,
    status: Status,
    *,
    path: str | None = None,
    http_status: int | None = None,
    size: int = 0,
    sha256: str | None = None,
    attempts: int = 0,
    elapsed: float = 0.0,
    error: str | None = None,
    received: int = 0,
    final_url: str | None = None,
    content_type: str | None = None,
) -> Result:
    """The one way a Result is made: the URLs and the error are masked here, once."""
    return Result(
        url=redact(url), status=status, path=path, http_status=http_status, bytes=size,
        received=received, sha256=sha256, attempts=attempts, elapsed=elapsed,
        error=redact(error) if error else None,
        final_url=redact(final_url) if final_url else None, content_type=content_type,
        fetched_at=_now(),
    )


def _now() -> str:
    """The time as ISO 8601 in UTC, to the millisecond; made once per millisecond (results
    come in bursts: formatting a datetime for each was 3 % of the scheduler's time)."""
    global _stamp
    now_ms = time.time_ns() // 1_000_000
    stamp = _stamp  # one read: another thread may replace it meanwhile, whole
    if stamp[0] != now_ms:
        moment = datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC)
        stamp = _stamp = (now_ms, moment.isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"))
    return stamp[1]


_stamp: tuple[int, str] = (0, "")
