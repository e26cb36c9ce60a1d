"""Secrets never reach a screen, a log or the manifest: URL passwords are masked everywhere."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s@:]*):[^/\s@]*@")


def redact(text: str) -> str:
    """`https://user:secret@host/x` -> `https://user:***@host/x`, anywhere in `text`."""
    if "@" not in text:  # nearly every URL: skip the regex (it ran once per result)
        return text
    return _USERINFO.sub(r"\g<scheme>\g<user>:***@", text)
