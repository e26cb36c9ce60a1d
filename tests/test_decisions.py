"""The fetch decisions, narrow and fast, with aioresponses (the maintained aioresponses-ng):
retry on ClientError and TimeoutError, Retry-After, give-up, redirects, errors in our words.
`backoff_s=0`: no test sleeps for real. Streaming and the CLI are tested against real servers."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses

import bulkfetch
from bulkfetch.models import Result, Summary

URL = "http://example.test/file.bin"


def fetch(tmp_path: Path, urls: list[str], **options: object) -> tuple[Summary, dict[str, Result]]:
    results: dict[str, Result] = {}
    options = {"backoff_s": 0.0, "concurrency": 2, **options}
    summary = bulkfetch.fetch([urls], tmp_path / "out", on_result=lambda r: results.__setitem__(
        r.url, r), **options)
    return summary, results


@pytest.mark.parametrize("fault", [
    aiohttp.ServerDisconnectedError(), aiohttp.ClientPayloadError("cut"), TimeoutError(),
    aiohttp.ClientOSError(104, "Connection reset by peer"),
])
def test_a_transient_fault_is_retried(tmp_path: Path, fault: Exception) -> None:
    with aioresponses() as mock:
        mock.get(URL, exception=fault)
        mock.get(URL, body=b"x" * 100)
        _, results = fetch(tmp_path, [URL])
    assert results[URL].status == "ok" and results[URL].attempts == 2
    assert (tmp_path / "out" / str(results[URL].path)).read_bytes() == b"x" * 100


def test_retry_after_is_honoured_and_503_retried(tmp_path: Path) -> None:
    with aioresponses() as mock:
        mock.get(URL, status=503, headers={"Retry-After": "0"})
        mock.get(URL, status=429, headers={"Retry-After": "0"})
        mock.get(URL, body=b"ok")
        _, results = fetch(tmp_path, [URL])
    assert results[URL].status == "ok" and results[URL].attempts == 3


def test_it_gives_up_after_the_retries(tmp_path: Path) -> None:
    with aioresponses() as mock:
        mock.get(URL, status=502, repeat=True)
        summary, results = fetch(tmp_path, [URL], retries=2)
    assert summary.failed == 1
    assert results[URL].error == "HTTP 502 Bad Gateway (gave up after 3 attempts)"


def test_a_404_is_not_retried(tmp_path: Path) -> None:
    with aioresponses() as mock:
        mock.get(URL, status=404)
        _, results = fetch(tmp_path, [URL])
    assert results[URL].attempts == 1 and results[URL].http_status == 404


def test_redirects_are_followed_to_the_body(tmp_path: Path) -> None:
    with aioresponses() as mock:
        mock.get(URL, status=301, headers={"Location": "/moved/file.bin"})
        mock.get("http://example.test/moved/file.bin", status=302,
                 headers={"Location": "http://other.test/final"})
        mock.get("http://other.test/final", body=b"final")
        _, results = fetch(tmp_path, [URL])
    assert results[URL].status == "ok"
    assert (tmp_path / "out" / str(results[URL].path)).read_bytes() == b"final"


def test_a_redirect_loop_stops_at_max_redirects(tmp_path: Path) -> None:
    with aioresponses() as mock:
        mock.get(URL, status=302, headers={"Location": URL}, repeat=True)
        _, results = fetch(tmp_path, [URL], max_redirects=3)
    assert results[URL].error == "too many redirects (more than 3; a loop?)"
    assert results[URL].attempts == 1


@pytest.mark.parametrize(("fault", "words"), [
    (aiohttp.ClientConnectorDNSError(
        aiohttp.client_reqrep.ConnectionKey("example.test", 80, False, True, None, None, None),
        OSError(-2, "Name or service not known")), "name not resolved"),
    (aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("example.test", 80, False, True, None, None, None),
        ConnectionRefusedError(111, "Connect call failed")), "connection refused"),
])
def test_connection_errors_in_our_words(tmp_path: Path, fault: Exception, words: str) -> None:
    with aioresponses() as mock:
        mock.get(URL, exception=fault, repeat=True)
        _, results = fetch(tmp_path, [URL], retries=0)
    assert results[URL].error == (f"cannot connect to example.test:80: {words} "
                                  "(gave up after 1 attempt)")
