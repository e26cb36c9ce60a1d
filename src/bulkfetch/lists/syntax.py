"""Syntax of URL-list files: raw lines in, `UrlLine`s out. Meaning is `plan`'s job."""

from __future__ import annotations

from bulkfetch.models import UrlLine

CHECKSUM_PREFIX = "sha256:"


def parse_line(raw: bytes, *, source: str, lineno: int) -> UrlLine | None:
    """Parse one line; None for blank lines and comments.

    A line is `URL`, then optionally NAME (which may hold spaces), then optionally a last field
    `sha256:HEX` that the body must match.
    """
    # A byte that is not UTF-8 is kept (as a lone surrogate), so that plan refuses the line
    # rather than fetch a URL that is not the one written.
    text = raw.decode("utf-8", errors="surrogateescape").strip()
    if lineno == 1:
        text = text.removeprefix("\ufeff").strip()
    if not text or text.startswith("#"):
        return None
    url, *more = text.split(None, 1)
    rest = more[0] if more else ""
    checksum = None
    last = (rest.split() or [""])[-1]
    if last.lower().startswith(CHECKSUM_PREFIX):
        checksum = last[len(CHECKSUM_PREFIX) :]
        rest = rest[: rest.rfind(last)].strip()
    return UrlLine(
        where=f"{source}:{lineno}", url=url, name=rest or None, sha256=checksum
    )
