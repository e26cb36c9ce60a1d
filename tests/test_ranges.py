"""Whether kept bytes and a 206 may be joined: the header decisions, table-tested."""

from __future__ import annotations

import pytest

from bulkfetch.http.ranges import ContentRange, Mismatch, continuation, if_range_validator
from bulkfetch.http.ranges import parse_content_range as parse
from bulkfetch.models import Resume

OLD = "Sun, 01 Nov 2026 00:00:00 GMT"
NOW = "Wed, 02 Dec 2026 20:00:00 GMT"


@pytest.mark.parametrize(("value", "expected"), [
    ("bytes 0-9/10", ContentRange(0, 9, 10)),
    ("bytes 6291456-7340031/16777216", ContentRange(6291456, 7340031, 16777216)),
    ("bytes 5-9/*", ContentRange(5, 9, None)),
    ("bytes 9-5/10", None), ("bytes 0-10/10", None), ("bytes */10", None),
    ("items 0-9/10", None), ("bytes 0-9", None), ("bytes -1-9/10", None), (None, None),
    ("bytes 0-9/10, 20-29/30", None),
])
def test_content_range(value: str | None, expected: ContentRange | None) -> None:
    assert parse(value) == expected


@pytest.mark.parametrize(("headers", "expected"), [
    ({"ETag": '"a"', "Last-Modified": OLD, "Date": NOW}, '"a"'),
    ({"ETag": 'W/"a"', "Last-Modified": OLD, "Date": NOW}, None),  # RFC 9110 13.1.5
    ({"Last-Modified": OLD, "Date": NOW}, OLD),
    ({"Last-Modified": NOW, "Date": NOW}, None),  # changed within the last minute: weak
    ({"Last-Modified": OLD}, None),
    ({}, None),
])
def test_if_range_validator(headers: dict[str, str], expected: str | None) -> None:
    assert if_range_validator(headers) == expected


KEPT = Resume(offset=100, validator='"v1"', total=1000)


def test_a_206_continuing_the_kept_bytes() -> None:
    span = continuation({"ETag": '"v1"', "Content-Range": "bytes 100-999/1000"}, KEPT, 900)
    assert span.whole and span.end == 1000


def test_a_capped_206_is_a_continuation_that_is_not_whole() -> None:
    span = continuation({"ETag": '"v1"', "Content-Range": "bytes 100-199/1000"}, KEPT, 100)
    assert not span.whole and span.end == 200


@pytest.mark.parametrize(("headers", "length", "why"), [
    ({"ETag": '"v2"', "Content-Range": "bytes 100-999/1000"}, 900, "another version"),
    ({"Content-Range": "bytes 100-999/1000"}, 900, "another version"),
    ({"ETag": 'W/"v1"', "Content-Range": "bytes 100-999/1000"}, 900, "another version"),
    ({"ETag": '"v1"', "Content-Range": "bytes 0-999/1000"}, 1000, "asked for bytes from 100"),
    ({"ETag": '"v1"', "Content-Range": "bytes 100-1999/2000"}, 1900, "was 1,000 bytes"),
    ({"ETag": '"v1"', "Content-Range": "bytes 100-999/*"}, 900, "unusable"),
    ({"ETag": '"v1"'}, 900, "unusable"),
    ({"ETag": '"v1"', "Content-Range": "bytes 100-999/1000"}, 500, "Content-Length 500"),
])
def test_a_206_that_cannot_be_joined(headers: dict[str, str], length: int, why: str) -> None:
    with pytest.raises(Mismatch, match=why):
        continuation(headers, KEPT, length)


def test_a_date_validator_is_compared_with_last_modified() -> None:
    kept = Resume(offset=100, validator=OLD)
    headers = {"Last-Modified": OLD, "Content-Range": "bytes 100-999/1000"}
    assert continuation(headers, kept, None).whole
    with pytest.raises(Mismatch):
        continuation({**headers, "Last-Modified": NOW}, kept, None)
