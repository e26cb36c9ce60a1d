"""Syntax of URL-list files: raw lines in, `UrlLine`s out. Meaning is `plan`'s job."""

from __future__ import annotations

from bulkfetch.models import UrlLine


def parse_line(raw: bytes, *, source: str, lineno: int) -> UrlLine | None:
    """Parse one line; None for blank lines and comments.

    A line is `URL` or `URL<whitespace>NAME`; NAME is the rest of the line, so it may hold spaces.
    """
    text = raw.decode("utf-8", errors="replace").strip()
    if lineno == 1:
        text = text.removeprefix("\ufeff").strip()
    if not text or text.startswith("#"):
        return None
    url, *rest = text.split(None, 1)
    return UrlLine(where=f"{source}:{lineno}", url=url, name=rest[0] if rest else None)
