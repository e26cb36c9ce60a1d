"""One URL: attempts, status classification, streaming to the sink.

This is the only module that catches aiohttp's exceptions; each becomes a one-line description
and a verdict on whether another attempt could help:

    aiohttp.ClientError
      ├─ TooManyRedirects, InvalidURL, NonHttpUrlClientError, ClientSSLError   final
      └─ everything else (connect, reset, disconnected, payload cut short)      retried
    asyncio.TimeoutError                                                        retried
    OSError from the sink (disk full, permissions, a folder in the way)         final
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from bulkfetch.creds import Credentials
from bulkfetch.events import Observer
from bulkfetch.models import Job, Result, Resume, Status, Timeouts, Validators
from bulkfetch.pace import Pacer
from bulkfetch.redact import redact
from bulkfetch.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from bulkfetch.sink import ChecksumMismatch, Partial, PendingFile, Sink

CHUNK_BYTES = 256 * 1024
RESUMABLE_BYTES = 4 * 1024 * 1024
# A big body is written out in bigger flushes: a quarter of the thread hops per MB (1 GiB:
# 2.3 s -> 1.7 s). Only a few at once, so that memory stays bounded at any -c. The chunks stay
# the size of asyncio's socket reads, which iter_chunked then hands over without joining them
# (1 MiB chunks: 1.9-2.6 s; 256 KiB: 1.8-1.9 s).
BIG_FLUSH_BYTES = 1024 * 1024
BIG_STREAMS = 8

_FINAL_CLIENT_ERRORS = (
    aiohttp.TooManyRedirects,
    aiohttp.InvalidURL,
    aiohttp.NonHttpUrlClientError,
    aiohttp.ClientSSLError,
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to."""

    http_status: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after_s: float | None = None
    size: int = 0
    sha256: str | None = None
    not_modified: bool = False
    validators: Validators | None = None
    resume: Resume | None = None  # what the next attempt can continue from


@dataclass(frozen=True, slots=True)
class Fetched:
    """The verdict, and what the next run needs to ask conditionally."""

    result: Result
    validators: Validators | None


class ShortBody(Exception):
    """The connection ended before Content-Length bytes arrived."""


class TooBig(Exception):
    """The body is larger than --max-bytes."""


class Fetcher:
    """Fetches jobs over one shared session; at most `semaphore` attempts at once."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        semaphore: asyncio.Semaphore,
        sink: Sink,
        *,
        policy: RetryPolicy,
        timeouts: Timeouts,
        max_redirects: int = 10,
        max_bytes: int | None = None,
        credentials: Credentials | None = None,
        pacer: Pacer | None = None,
        conditional: bool = True,
        observer: Observer,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._semaphore = semaphore
        self._big_streams = 0
        self._sink = sink
        self._policy = policy
        self._timeouts = timeouts
        self._max_redirects = max_redirects
        self._max_bytes = max_bytes
        self._credentials = credentials or Credentials()
        self._pacer = pacer or Pacer()
        self._conditional = conditional
        self._observer = observer
        self._sleep = sleep
        self._clock = clock

    async def fetch(self, job: Job) -> Fetched:
        """Every attempt the policy allows, then the verdict; never raises for a network fault."""
        start = self._clock()
        attempt_no = 0
        resume = job.resume
        while True:
            attempt_no += 1
            attempt = await self._attempt(job, attempt_no, resume)
            resume = attempt.resume
            error = attempt.error
            if error is None or not attempt.retryable:
                break
            if attempt_no > self._policy.retries:
                error = f"{error} (gave up after {attempt_no} attempts)"
                break
            cap = self._policy.retry_after_cap_s
            if attempt.retry_after_s is not None and attempt.http_status in (429, 503):
                self._pacer.pause(_host(job.url), min(attempt.retry_after_s, cap))
            if attempt.retry_after_s is not None and attempt.retry_after_s > cap:
                error = f"{error}; Retry-After {attempt.retry_after_s:.0f}s exceeds {cap:.0f}s"
                break
            delay = self._policy.delay(attempt_no, retry_after_s=attempt.retry_after_s)
            self._observer.retrying(job, attempt_no, delay, error)
            await self._sleep(delay)
        if error:
            status = Status.FAILED
        else:
            status = Status.NOT_MODIFIED if attempt.not_modified else Status.OK
        # A failure leaves an earlier run's file where it was, and the manifest says so.
        kept = job.prior.path if job.prior else None
        result = Result(
            url=redact(job.url),
            status=status,
            path=kept if error else job.path,
            http_status=attempt.http_status,
            bytes=attempt.size,
            sha256=attempt.sha256,
            attempts=attempt_no,
            elapsed=round(self._clock() - start, 3),
            error=redact(error) if error else None,
        )
        return Fetched(result, attempt.validators)

    async def _attempt(self, job: Job, attempt_no: int, resume: Resume | None) -> Attempt:
        http_status: int | None = None
        kept = resume  # what a failure of this attempt leaves to continue from

        def failed(error: str, *, retryable: bool = True) -> Attempt:
            return Attempt(http_status=http_status, error=error, retryable=retryable, resume=kept)

        if self._pacer.active:
            await self._pacer.wait(_host(job.url))
        await self._semaphore.acquire()
        holding = True  # a slot is a request in flight; writing the file out needs none
        try:
            self._observer.started(job, attempt_no)
            try:
                headers = _range(resume) if resume else self._conditions(job)
                # aiohttp gives up when the count of redirects *reaches* max_redirects.
                get = self._session.get(
                    job.url, headers=headers, max_redirects=self._max_redirects + 1,
                    **self._credentials.request_options(job.url),
                )
                async with get as resp:
                    http_status = resp.status
                    validators = _validators(resp)
                    if resp.status == 304 and job.prior is not None:
                        return Attempt(http_status=304, not_modified=True, validators=validators)
                    if resume is not None and not _continues(resp, resume):
                        if resp.status in (200, 206, 416):  # changed, or no ranges: start over
                            kept = None
                            await self._sink.drop_partial(job.url)
                        if resp.status in (206, 416):
                            return failed(f"cannot resume at byte {resume.offset}")
                    if not 200 <= resp.status < 300:
                        return dataclasses.replace(_refused(resp), resume=kept)
                    announced = (resp.content_length or 0) + (kept.offset if kept else 0)
                    if self._max_bytes is not None and announced > self._max_bytes:
                        return failed(_too_big(announced, self._max_bytes), retryable=False)
                    self._observer.responded(job, resp.content_length)
                    big = (
                        (resp.content_length or 0) >= RESUMABLE_BYTES
                        and self._big_streams < BIG_STREAMS
                    )
                    pending = self._sink.open(
                        job.path, partial=self._partial(job, resp, kept),
                        flush_bytes=BIG_FLUSH_BYTES if big else CHUNK_BYTES,
                    )
                    self._big_streams += big
                    try:
                        await self._stream(job, resp, pending)
                    except BaseException as exc:
                        keep = not isinstance(exc, OSError | TooBig)
                        kept = await pending.discard(keep=keep)
                        raise
                    finally:
                        self._big_streams -= big
                self._semaphore.release()
                holding = False
                sha256 = await pending.commit(expect_sha256=job.sha256)
                return Attempt(
                    http_status=http_status, size=pending.offset + pending.size, sha256=sha256,
                    validators=validators,
                )
            except (ChecksumMismatch, TooBig) as exc:
                return failed(str(exc), retryable=False)
            except _FINAL_CLIENT_ERRORS as exc:
                return failed(_describe(exc, self._max_redirects), retryable=False)
            except TimeoutError as exc:
                return failed(_timed_out(exc, self._timeouts))
            except (aiohttp.ClientError, ShortBody) as exc:
                return failed(_describe(exc, self._max_redirects))
            except OSError as exc:
                return failed(f"cannot write the file: {exc}", retryable=False)
        finally:
            if holding:
                self._semaphore.release()

    def _partial(
        self, job: Job, resp: aiohttp.ClientResponse, resume: Resume | None
    ) -> Partial | None:
        """Where to keep this body so that a cut-off attempt can be continued, if it can be."""
        if resume is not None and resp.status == 206:
            return self._sink.partial(job.url, resume.validator, resume.offset)
        # Keeping a partial costs a few file operations; only a big body repays them.
        if (resp.content_length or 0) < RESUMABLE_BYTES:
            return None
        validator = _strong_validator(resp)
        return self._sink.partial(job.url, validator, 0) if validator else None

    def _conditions(self, job: Job) -> dict[str, str] | None:
        """If-None-Match / If-Modified-Since from the earlier run, when revalidating."""
        prior = job.prior
        if prior is None or not self._conditional:
            return None
        headers = {}
        if prior.etag:
            headers["If-None-Match"] = prior.etag
        if prior.last_modified:
            headers["If-Modified-Since"] = prior.last_modified
        return headers or None

    async def _stream(
        self, job: Job, resp: aiohttp.ClientResponse, pending: PendingFile
    ) -> None:
        received = self._observer.received
        limit = self._max_bytes
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            await pending.write(chunk)
            received(job, len(chunk))
            if limit is not None and pending.offset + pending.size > limit:
                raise TooBig(_too_big(pending.offset + pending.size, limit, so_far=True))
        expected = resp.content_length
        if expected is not None and pending.size != expected:
            raise ShortBody(f"body cut short: {pending.size} of {expected} bytes")


def _host(url: str) -> str:
    return URL(url).host or ""


def _too_big(size: int, limit: int, *, so_far: bool = False) -> str:
    what = f"more than {limit:,} bytes arrived" if so_far else f"the body is {size:,} bytes"
    return f"{what}; --max-bytes is {limit:,}"


def _range(resume: Resume) -> dict[str, str]:
    return {"Range": f"bytes={resume.offset}-", "If-Range": resume.validator}


def _continues(resp: aiohttp.ClientResponse, resume: Resume) -> bool:
    """A 206 whose Content-Range starts exactly where the kept bytes end."""
    if resp.status != 206:
        return False
    unit, _, spec = resp.headers.get("Content-Range", "").partition(" ")
    return unit == "bytes" and spec.split("-", 1)[0].strip() == str(resume.offset)


def _strong_validator(resp: aiohttp.ClientResponse) -> str | None:
    """A validator If-Range may carry: a strong ETag, else Last-Modified (RFC 9110 13.1.5)."""
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified")


def _validators(resp: aiohttp.ClientResponse) -> Validators | None:
    etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
    return Validators(etag, modified) if etag or modified else None


def _refused(resp: aiohttp.ClientResponse) -> Attempt:
    """A non-2xx answer: retried when the status says a later try may work."""
    retryable = resp.status in RETRYABLE_STATUSES
    return Attempt(
        http_status=resp.status,
        error=f"HTTP {resp.status} {resp.reason or ''}".rstrip(),
        retryable=retryable,
        retry_after_s=parse_retry_after(resp.headers.get("Retry-After")) if retryable else None,
    )


def _timed_out(exc: TimeoutError, timeouts: Timeouts) -> str:
    """Which timeout fired, and after how long."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError) and timeouts.connect_s is not None:
        return f"connect timed out after {timeouts.connect_s:g}s (--connect-timeout)"
    if isinstance(exc, aiohttp.SocketTimeoutError) and timeouts.read_s is not None:
        return f"no data for {timeouts.read_s:g}s (--read-timeout)"
    return f"timed out after {timeouts.total_s:g}s (--timeout)"


def _describe(exc: BaseException, max_redirects: int) -> str:
    """A one-line, never empty, description of a network fault."""
    match exc:
        case aiohttp.TooManyRedirects():
            return f"too many redirects (more than {max_redirects}; a loop?)"
        case aiohttp.NonHttpUrlClientError() | aiohttp.InvalidURL():
            return f"redirected to an unusable URL: {exc}"
        case aiohttp.ClientConnectorCertificateError():
            reason = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
            return f"TLS: the certificate of {exc.host}:{exc.port} is not trusted: {reason}"
        case aiohttp.ClientSSLError():
            return f"TLS: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        case aiohttp.ClientConnectorError():
            return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc}"
        case aiohttp.ServerDisconnectedError():
            return "the server closed the connection before answering"
        case aiohttp.ClientPayloadError():
            return f"body cut short: {exc}"
        case aiohttp.ClientConnectionResetError() | ConnectionResetError():
            return "the connection was reset"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
