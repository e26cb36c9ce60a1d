"""One table from exception to (failure kind, words): first match wins, a subclass before its
base; what is not in it is a bug and is raised; the design document shows the same table."""

from __future__ import annotations

import errno
from pathlib import Path

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from bulkfetch.http.failures import TABLE, ShortBody, TooBig, classify, markdown
from bulkfetch.http.redirects import BadRedirect
from bulkfetch.models import Failure, Timeouts
from bulkfetch.store.sink import ChecksumMismatch, StoreFailed

KEY = ConnectionKey("h", 80, False, True, None, None, None)
REFUSED = aiohttp.ClientConnectorError(KEY, OSError(errno.ECONNREFUSED, "Connect call failed"))


@pytest.mark.parametrize(("exc", "failure", "words"), [
    (ChecksumMismatch("ab", "cd"), Failure.FINAL, "sha256 mismatch: got ab, the list says cd"),
    (TooBig("too big"), Failure.FINAL, "too big"),
    (StoreFailed("slow down", retryable=True), Failure.TRANSFER, "slow down"),
    (StoreFailed("denied", retryable=False), Failure.FINAL, "denied"),
    (BadRedirect("redirected to an unusable URL: 'x'"), Failure.FINAL, "unusable URL"),
    (REFUSED, Failure.CONNECT, "cannot connect to h:80: connection refused"),
    (aiohttp.ConnectionTimeoutError(), Failure.CONNECT, "connect timed out after 3s"),
    (aiohttp.SocketTimeoutError(), Failure.TRANSFER, "no data for 2s (--read-timeout)"),
    (TimeoutError(), Failure.TRANSFER, "timed out after 9s (--timeout)"),  # str() is ""
    (aiohttp.ServerDisconnectedError(), Failure.TRANSFER, "closed the connection"),
    (ShortBody("body cut short: 1 of 2 bytes"), Failure.TRANSFER, "1 of 2 bytes"),
    (aiohttp.ClientOSError(), Failure.TRANSFER, "ClientOSError"),  # never an empty line
    (OSError(errno.ENOSPC, "No space left on device"), Failure.FINAL,
     "cannot write the file: no space left on device"),
])
def test_classify(exc: BaseException, failure: Failure, words: str) -> None:
    fault = classify(exc, Timeouts(total_s=9, connect_s=3, read_s=2))
    assert fault is not None and fault.failure is failure and words in fault.words


def test_the_proxys_refusal_keeps_its_status() -> None:
    exc = aiohttp.ClientHttpProxyError(None, (), status=407, message="Proxy Auth")  # type: ignore[arg-type]
    fault = classify(exc, Timeouts())
    assert fault is not None and (fault.failure, fault.http_status) == (Failure.STATUS, 407)
    assert "refused the credentials" in fault.words


def test_a_bug_is_not_a_fault() -> None:
    assert classify(ValueError("oops"), Timeouts()) is None


def test_no_row_is_shadowed_by_one_above() -> None:
    """First match wins: a row under its base would never be reached."""
    for i, row in enumerate(TABLE):
        for above in TABLE[:i]:
            assert not any(issubclass(t, above.types) for t in row.types), (row, above)


def test_the_design_document_shows_the_table() -> None:
    design = Path(__file__).resolve().parent.parent / "docs" / "DESIGN.md"
    assert markdown() in design.read_text()
