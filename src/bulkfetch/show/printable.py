"""Text from outside (list lines, URLs, names, headers, server reasons, error texts) made safe
to show: a terminal or a log never receives a control character from it.

ESC could retitle the terminal or clear it, BEL and NUL end up in cron logs, a bidi override
reorders what is read, and a lone surrogate (an undecodable byte of a binary list) cannot even
be written to a UTF-8 stream. Each is shown as a backslash escape instead.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"  # bidi, zero-width, line separators
    "\ud800-\udfff]"  # lone surrogates: undecodable bytes
)


def printable(text: str) -> str:
    """`text` with every control, format or undecodable character escaped (`\\x1b`, `\\u202e`);
    the same string, at no cost, when there is none (nearly always)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
