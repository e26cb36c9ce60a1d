"""From an exception to (failure kind, words): the one table, read top-down, first match wins
(a subclass before its base), as httpcore's `map_exceptions` does. The fetcher classifies
every fault of an attempt here, and docs/DESIGN.md shows this table (`markdown()`; a test
keeps the two the same). Whether another attempt follows is the retry policy's decision
(`schedule/retry.py`); what is not here is a bug, and is raised.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp_socks

from bulkfetch.http.redirects import UNUSABLE, BadRedirect, TooManyRedirects
from bulkfetch.models import Failure, Timeouts
from bulkfetch.store.folder import NotFollowed
from bulkfetch.store.sink import ChecksumMismatch, Conflict, StoreFailed

MAX_HEADER_BYTES = 64 * 1024  # one header line, or the status line (the session's limit)


class ShortBody(Exception):
    """The connection ended before Content-Length bytes arrived."""


class ShortRange(Exception):
    """A 206 ended where the server capped its range, before the body's end."""


class TooBig(Exception):
    """The body is larger than --max-bytes."""


@dataclass(frozen=True, slots=True)
class Fault:
    """What an attempt's exception came to."""

    failure: Failure
    words: str  # one line, never empty
    http_status: int | None = None  # a proxy's refusal has a status of its own


Words = Callable[[Any, Timeouts], str]


@dataclass(frozen=True, slots=True)
class Row:
    types: tuple[type[BaseException], ...]
    failure: Failure
    words: Words
    said: str  # what `words` says, for the docs
    final_when: Callable[[Any], bool] | None = None  # then no other try can help

    def fault(self, exc: BaseException, timeouts: Timeouts) -> Fault:
        failure = self.failure
        if isinstance(exc, StoreFailed) and not exc.retryable:
            failure = Failure.FINAL
        if self.final_when is not None and self.final_when(exc):
            failure = Failure.FINAL
        status = exc.status if isinstance(exc, aiohttp.ClientHttpProxyError) else None
        return Fault(failure, self.words(exc, timeouts), status)


def classify(exc: BaseException, timeouts: Timeouts) -> Fault | None:
    """The first row that `exc` belongs to decides; None: not a fault we know (a bug)."""
    for row in TABLE:
        if isinstance(exc, row.types):
            return row.fault(exc, timeouts)
    return None


def _own(exc: BaseException, timeouts: Timeouts) -> str:
    return str(exc)


def _unusable(exc: BaseException, timeouts: Timeouts) -> str:
    return f"{UNUSABLE}: {exc}"


def _proxy(exc: aiohttp.ClientHttpProxyError, timeouts: Timeouts) -> str:
    return proxy_refused(exc.status, exc.message)


def proxy_refused(status: int, reason: str | None) -> str:
    """A proxy's refusal; a 401 to a CONNECT (tinyproxy) means what a 407 means."""
    what = f"HTTP {status} {reason or ''}".rstrip()
    if status in (401, 407):
        return f"the proxy refused the credentials ({what}); not retried"
    return f"the proxy refused the connection ({what})"


def _unparsable(exc: aiohttp.ClientResponseError, timeouts: Timeouts) -> str:
    """aiohttp reports a malformed answer as an invented 400 whose message quotes the bytes
    (a session cookie, say): neither the status nor the text is shown."""
    if exc.message.startswith("Got more than"):
        return f"the server sent an oversized header (over {MAX_HEADER_BYTES // 1024} KiB)"
    return "the server sent a malformed answer (not valid HTTP/1.1)"


def _untrusted(exc: aiohttp.ClientConnectorCertificateError, timeouts: Timeouts) -> str:
    reason = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
    return (f"TLS: the certificate of {exc.host}:{exc.port} is not trusted: {reason} "
            "(use --cacert FILE for a private CA)")


def _tls(exc: aiohttp.ClientSSLError, timeouts: Timeouts) -> str:
    return f"TLS: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _timed_out(exc: TimeoutError, timeouts: Timeouts) -> str:
    """Which timeout fired, and after how long."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError) and timeouts.connect_s is not None:
        return f"connect timed out after {timeouts.connect_s:g}s (--connect-timeout)"
    if isinstance(exc, aiohttp.SocketTimeoutError) and timeouts.read_s is not None:
        return f"no data for {timeouts.read_s:g}s (--read-timeout)"
    return f"timed out after {timeouts.total_s:g}s (--timeout)"


def _unresolved(exc: aiohttp.ClientConnectorDNSError, timeouts: Timeouts) -> str:
    late = "timeout" in str(exc.os_error).lower()  # c-ares: "Timeout while contacting DNS…"
    why = " (the resolver did not answer in time)" if late else ""
    return f"cannot connect to {exc.host}:{exc.port}: name not resolved{why}"


_OS_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "timed out",
    errno.ECONNRESET: "connection reset",
}


def _unreachable(exc: aiohttp.ClientConnectorError, timeouts: Timeouts) -> str:
    """A socket error in our words, not the C library's (`[Errno 111] Connect call failed`);
    a proxy named as one, so that nobody looks for the fault at the origin."""
    error = exc.os_error
    reason = _OS_REASONS.get(error.errno or 0) or (
        error.strerror or str(error) or type(error).__name__).lower()
    what = "the proxy " if isinstance(exc, aiohttp.ClientProxyConnectionError) else ""
    return f"cannot connect to {what}{exc.host}:{exc.port}: {reason}"


_PROXY_AT = re.compile(r"proxy (\S+?):(\d+)")


def _socks_unreachable(exc: aiohttp_socks.ProxyConnectionError, timeouts: Timeouts) -> str:
    """python-socks says `[Errno 111] Couldn't connect to proxy H:P [Connect call ...]`."""
    where = _PROXY_AT.search(str(exc))
    cause = exc.__cause__
    code = cause.errno if isinstance(cause, OSError) else None
    reason = _OS_REASONS.get(code or 0, "no connection")
    if where is None:
        return f"cannot connect to the proxy: {reason}"
    return f"cannot connect to the proxy {where[1]}:{where[2]}: {reason}"


def _socks_refused(exc: aiohttp_socks.ProxyError, timeouts: Timeouts) -> str:
    reason = str(exc).strip() or "no reason given"
    if _socks_credentials(exc):
        return f"the SOCKS proxy refused the credentials ({reason}); not retried"
    return f"the SOCKS proxy refused: {reason}"


def _socks_credentials(exc: aiohttp_socks.ProxyError) -> bool:
    """python-socks' words for a login refused, or one the proxy asks for and was not given:
    another try sends the same."""
    return str(exc).strip().lower() in _SOCKS_LOGIN


_SOCKS_LOGIN = frozenset({"username and password authentication failure",
                          "no acceptable authentication methods were offered"})


def _os(exc: aiohttp.ClientOSError, timeouts: Timeouts) -> str:
    """A name the resolver does not know (socks5://: we resolve) in the usual words."""
    if exc.errno in (socket.EAI_NONAME, socket.EAI_AGAIN, socket.EAI_FAIL):
        return "name not resolved"
    return _other(exc, timeouts)


def _said(words: str) -> Words:
    return lambda exc, timeouts: words


def _cut(exc: aiohttp.ClientPayloadError, timeouts: Timeouts) -> str:
    return f"body cut short: {exc}"


def _other(exc: BaseException, timeouts: Timeouts) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _disk(exc: OSError, timeouts: Timeouts) -> str:
    """In the words a user searches for (`no space left on device`), never `[Errno 28]`."""
    reason = exc.strerror.lower() if exc.strerror else str(exc) or type(exc).__name__
    return f"cannot write the file: {reason}"


F = Failure
TABLE: tuple[Row, ...] = (
    Row((ChecksumMismatch, TooBig, Conflict), F.FINAL, _own, "its own message"),
    Row((StoreFailed,), F.TRANSFER, _own, "its own message (FINAL unless retryable)"),
    Row((TooManyRedirects, BadRedirect), F.FINAL, _own, "its own message"),
    Row((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError), F.FINAL, _unusable,
        f"{UNUSABLE}: …"),
    # Before ClientResponseError, its base: the proxy refused the CONNECT, with a status.
    Row((aiohttp.ClientHttpProxyError,), F.STATUS, _proxy, "the proxy refused …"),
    Row((aiohttp.ClientResponseError,), F.FINAL, _unparsable, "a malformed answer"),
    # TLS before ClientConnectorError, their base: the host's fault, final for the URL.
    Row((aiohttp.ClientConnectorCertificateError,), F.TLS, _untrusted,
        "TLS: the certificate … is not trusted"),
    Row((aiohttp.ClientSSLError,), F.TLS, _tls, "TLS: …"),
    # Before TimeoutError, its base.
    Row((aiohttp.ConnectionTimeoutError,), F.CONNECT, _timed_out, "connect timed out …"),
    Row((TimeoutError,), F.TRANSFER, _timed_out, "timed out / no data for …"),
    Row((aiohttp.ClientConnectorDNSError,), F.CONNECT, _unresolved, "name not resolved"),
    Row((aiohttp.ClientConnectorError,), F.CONNECT, _unreachable,
        "cannot connect to [the proxy] …"),
    Row((aiohttp_socks.ProxyConnectionError,), F.CONNECT, _socks_unreachable,
        "cannot connect to the proxy …"),
    Row((aiohttp_socks.ProxyTimeoutError,), F.CONNECT,
        _said("the SOCKS proxy did not answer in time"), "the SOCKS proxy did not answer …"),
    Row((aiohttp_socks.ProxyError,), F.CONNECT, _socks_refused,
        "the SOCKS proxy refused: … (a login refused: FINAL)",
        final_when=_socks_credentials),
    # python-socks reads the handshake with asyncio streams and lets their EOF through: a
    # SOCKS proxy that hangs up mid-handshake (pproxy does on a wrong password).
    Row((asyncio.IncompleteReadError,), F.CONNECT,
        _said("the proxy closed the connection during its handshake"),
        "the proxy closed the connection during its handshake"),
    Row((aiohttp.ServerDisconnectedError,), F.TRANSFER,
        _said("the server closed the connection before answering"), "the server closed …"),
    Row((aiohttp.ClientPayloadError,), F.TRANSFER, _cut, "body cut short: …"),
    Row((aiohttp.ClientConnectionResetError,), F.TRANSFER,
        _said("the connection was reset"), "the connection was reset"),
    Row((ShortBody, ShortRange), F.TRANSFER, _own, "its own message"),
    Row((aiohttp.ClientOSError,), F.TRANSFER, _os, "name not resolved / TYPE: …"),
    Row((aiohttp.ClientError,), F.TRANSFER, _other, "TYPE: its first line"),
    Row((NotFollowed,), F.FINAL, _own, "… is a symlink …; not followed"),
    # Last: an OSError that is no network error comes from the sink (disk full, permissions).
    Row((OSError,), F.FINAL, _disk, "cannot write the file: …"),
)


def markdown() -> str:
    """The table for docs/DESIGN.md."""
    lines = ["| exception | failure | words |", "|---|---|---|"]
    for row in TABLE:
        names = ", ".join(f"`{t.__name__}`" for t in row.types)
        lines.append(f"| {names} | {row.failure.name} | {row.said} |")
    return "\n".join(lines)
