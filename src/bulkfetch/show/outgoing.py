"""The one way out: what leaves the process passes here, so nothing upstream has to remember
to mask a password or escape a control character.

- `line(text)`: every line and table cell for a terminal or a log (the display, the live table,
  the CLI's own lines, a bug's traceback): passwords masked, then control characters escaped.
- `mask(text)`: every record that leaves (a `Result`, so the manifest and `on_result`; the
  state's readable URL; an object's `source-url`; `--summary-json`; `report --json`);
  `record(text)` masks and makes it valid Unicode (`lossless`): bytes from the wire that are
  not UTF-8 reach us as lone surrogates, which JSON and SQLite refuse.
- `make_result(...)`: the one way a `Result` is made; its URLs and error are masked here.
- `Outlet`: stderr as the CLI writes to it; a write that fails never stops or hangs the run.

Escaping: ESC could retitle the terminal or clear it, BEL and NUL end up in cron logs, a bidi
override reorders what is read, and a lone surrogate (an undecodable byte of a binary list)
cannot even be written to a UTF-8 stream. Each is shown as a backslash escape instead.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import time
from typing import TextIO

from bulkfetch.models import Result, Status

# scheme://USERINFO@ : the userinfo runs to the last "@" before the path, so a user name that
# holds an "@" (alice@example.com:PASSWORD@host) is masked whole, as a browser parses it.
# A space or a tab may be part of a password someone typed (the URL then still works): only a
# line break ends the userinfo. Masking too much of a line is the safe way to be wrong.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#\n\r\[\]]*)@")
# What no reader should receive raw: C0, DEL, C1; bidi, zero-width and line separators.
INVISIBLE = ("\x00-\x1f\x7f-\x9f"
             "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff")
_UNSAFE = re.compile(f"[{INVISIBLE}\ud800-\udfff]")  # and lone surrogates: undecodable bytes
_SURROGATE = re.compile("[\ud800-\udfff]")


def line(text: str) -> str:
    """`text` fit for a terminal or a log: passwords masked, control characters escaped."""
    return escape(mask(text))


def mask(text: str) -> str:
    """`https://user:secret@host/x` -> `https://user:***@host/x`, anywhere in `text`."""
    if "@" not in text:  # nearly every URL: no regex (this runs once per result)
        return text
    return _USERINFO.sub(_masked, text)


def lossless(text: str) -> str:
    """`text` as valid Unicode: each byte that was not UTF-8 (a lone surrogate, as aiohttp and
    `surrogateescape` hand it over) written as `\\xHH`; the same string when there is none."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(_escape, text)


def record(text: str) -> str:
    """For a record that leaves (the manifest, the state): masked, and valid Unicode."""
    return lossless(mask(text))


def _masked(match: re.Match[str]) -> str:
    user, colon, _ = match["info"].partition(":")
    return f"{match['scheme']}{user}{':***' if colon else ''}@"


def escape(text: str) -> str:
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


class Outlet:
    """A text stream (stderr) that no failed write raises from. The reader of a pipe gone
    (`| head -2`: EPIPE), a terminal hung up (EIO), a descriptor closed (EBADF): the run must
    go on and finish with the files, the manifest and the exit code it earned. So the first
    such failure stops all writing, quietly: the descriptor is pointed at /dev/null (so that
    Python's own flush at exit, and rich, meet no error either)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except BlockingIOError:  # a full non-blocking pipe: this line is lost, not all
                pass
            except (OSError, ValueError):  # ValueError: the stream was closed
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BlockingIOError:
                pass
            except (OSError, ValueError):
                self._break()

    def isatty(self) -> bool:
        return not self.broken and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return self._stream.encoding

    @property
    def errors(self) -> str | None:
        return self._stream.errors

    def _break(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)


def make_result(
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
    """The one way a Result is made: its texts are masked and made valid Unicode here, once
    (a server's reason phrase or Content-Type may hold any bytes)."""
    return Result(
        url=record(url), status=status, path=path, http_status=http_status, bytes=size,
        received=received, sha256=sha256, attempts=attempts, elapsed=elapsed,
        error=record(error) if error else None,
        final_url=record(final_url) if final_url else None,
        content_type=lossless(content_type) if content_type else None, fetched_at=_now(),
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
