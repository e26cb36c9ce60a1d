"""Resuming a body, pure: which validator may carry If-Range, and whether a 206 continues the
bytes we kept. Ranges combine only under the same strong validator (RFC 9110 15.3.7.3) and
only when Content-Range says exactly where they go; anything else starts over or fails, and a
body is never published short.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bulkfetch.http.headers import http_date
from bulkfetch.models import Resume

STRONG_DATE_S = 60  # a Last-Modified this long before Date is a strong validator (9110 8.8.2.2)
_CONTENT_RANGE = re.compile(r"bytes (\d{1,18})-(\d{1,18})/(\d{1,18}|\*)", re.ASCII)


@dataclass(frozen=True, slots=True)
class ContentRange:
    first: int
    last: int  # inclusive
    complete: int | None  # None: "*", the server does not know


@dataclass(frozen=True, slots=True)
class Continuation:
    """A 206 that continues the kept bytes: it ends at `end` (exclusive) of `complete`."""

    end: int
    complete: int

    @property
    def whole(self) -> bool:
        return self.end == self.complete


class Mismatch(Exception):
    """A 206 that cannot be joined to the kept bytes; the message says why."""


def parse_content_range(value: str | None) -> ContentRange | None:
    """`bytes FIRST-LAST/COMPLETE`, or None if it is not one satisfied byte range."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    first, last = int(match[1]), int(match[2])
    complete = None if match[3] == "*" else int(match[3])
    if last < first or (complete is not None and last >= complete):
        return None
    return ContentRange(first, last, complete)


def if_range_validator(headers: Mapping[str, str]) -> str | None:
    """What If-Range may carry for this answer's body: its strong ETag, or, when it has no ETag
    at all, a Last-Modified that is a strong validator (RFC 9110 13.1.5). None: not resumable."""
    etag = headers.get("ETag")
    if etag is not None:  # weak, or holding bytes that are not UTF-8: no If-Range with it
        return None if etag.startswith("W/") or not etag.isascii() else etag
    modified = headers.get("Last-Modified")
    if modified is None or not modified.isascii():
        return None
    changed, sent = http_date(modified), http_date(headers.get("Date"))
    if changed is None or sent is None or (sent - changed).total_seconds() < STRONG_DATE_S:
        return None
    return modified


def continuation(
    headers: Mapping[str, str], resume: Resume, content_length: int | None
) -> Continuation:
    """Check a 206 against the kept bytes; raises Mismatch with the reason if it does not
    continue them exactly: another version, another place, another length."""
    validator = headers.get("ETag") if resume.validator.startswith('"') else headers.get(
        "Last-Modified")
    if validator != resume.validator:
        raise Mismatch(f"the server sent another version ({_shown(validator)}, "
                       f"kept bytes are of {resume.validator})")
    got = parse_content_range(headers.get("Content-Range"))
    if got is None or got.complete is None:
        raise Mismatch(f"unusable Content-Range {_shown(headers.get('Content-Range'))}")
    where = f"bytes {got.first}-{got.last}/{got.complete}"
    if got.first != resume.offset:
        raise Mismatch(f"asked for bytes from {resume.offset}, the server sent {where}")
    if resume.total is not None and got.complete != resume.total:
        raise Mismatch(f"the body was {resume.total:,} bytes, the server now says {where}")
    if content_length is not None and content_length != got.last - got.first + 1:
        raise Mismatch(f"Content-Length {content_length} does not match {where}")
    return Continuation(end=got.last + 1, complete=got.complete)


def _shown(value: str | None) -> str:
    return "none" if value is None else repr(value[:80])

