"""One process's HTTP client: the single session, its connector, and the Fetcher over them.

The connector's limit and the Fetcher's semaphore are the same number: this process's slots
(all of --concurrency in one process, a worker's share with --workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from http.cookies import Morsel

import aiohttp
import aiohttp.abc
from yarl import URL

from bulkfetch import __version__
from bulkfetch.http.creds import Credentials, socks_connector
from bulkfetch.http.failures import MAX_HEADER_BYTES
from bulkfetch.http.fetcher import CHUNK_BYTES, Fetcher
from bulkfetch.http.pace import BytePace
from bulkfetch.http.redirects import Hops
from bulkfetch.http.split import Borrow
from bulkfetch.models import Refetch, Resume, Settings
from bulkfetch.show.events import Observer
from bulkfetch.store.folder import FolderSink
from bulkfetch.store.layout import temp_tag
from bulkfetch.store.sink import Target
from bulkfetch.store.threads import Writers


@dataclass(frozen=True, slots=True)
class Extras:
    """What the CLI prepared from files and the environment before the loop started."""

    ssl_context: ssl.SSLContext | bool = True
    credentials: Credentials = field(default_factory=Credentials)
    cookies: Sequence[tuple[Morsel[str], URL]] = ()
    pace: BytePace | None = None  # --limit-rate, shared with the worker processes


@contextlib.asynccontextmanager
async def fetcher(
    settings: Settings, extras: Extras, sink: Target, observer: Observer, *, limit: int,
    borrow: Borrow | None = None,
) -> AsyncIterator[Fetcher]:
    """A Fetcher with `limit` slots over a new session, closed on the way out; `borrow`
    (the scheduler's, in the process that schedules) lends a split body more slots."""
    async with _session(settings, extras, limit) as session:
        hops = Hops(session, extras.credentials, headers=settings.headers,
                    max_redirects=settings.max_redirects)
        yield Fetcher(
            hops,
            asyncio.Semaphore(limit),
            sink,
            timeouts=settings.timeouts,
            max_bytes=settings.max_bytes,
            conditional=settings.refetch is Refetch.REVALIDATE,
            content_disposition=settings.content_disposition,
            remote_time=settings.remote_time,
            pace=extras.pace,
            split=settings.split,
            min_split_size=settings.min_split_size,
            borrow=borrow,
            observer=observer,
        )


@contextlib.asynccontextmanager
async def target(settings: Settings, writers: Writers, *, limit: int) -> AsyncIterator[Target]:
    """Where this process puts bodies: the --out folder, or the bucket over one S3 client
    (aiobotocore is imported only then)."""
    if settings.bucket is None:
        folder = FolderSink(settings.out, writers, tag=temp_tag(settings.shard))
        try:
            yield folder
        finally:
            folder.close()
        return
    from bulkfetch.store import bucket, s3, s3put

    async with s3.connect(pool=limit) as (s3_client, credentials):
        fast = await s3put.FastPut.of(s3_client, credentials, settings.bucket)
        yield bucket.BucketSink(settings.bucket, s3_client, budget=bucket.Budget(
            bucket.BUDGET_BYTES), replace=settings.refetch is Refetch.FORCE, fast=fast)


def resume_finder(settings: Settings, writers: Writers) -> Callable[[str], Resume | None]:
    """What an earlier run kept of a URL's body (the intake asks, on its thread): a folder's
    partials; nothing for a bucket, whose cut-off uploads are aborted."""
    if settings.bucket is not None:
        return lambda url: None
    return FolderSink(settings.out, writers, tag=temp_tag(settings.shard)).find_resume


def _session(settings: Settings, extras: Extras, limit: int) -> aiohttp.ClientSession:
    agent = settings.user_agent or f"bulkfetch/{__version__}"
    headers = {"User-Agent": agent, "Accept-Encoding": "identity"}
    # -H headers go with each request (hops.py: some only to the listed origin); a default
    # they name is not sent at all. A header given twice is sent twice.
    extra = {name.lower() for name, _ in settings.headers}
    base = {k: v for k, v in headers.items() if k.lower() not in extra}
    # --per-host is the scheduler's (exact across processes); the pool needs no limit of its
    # own per host.
    socks = extras.credentials.proxies.socks
    connector = (socks_connector(socks, limit=limit, ssl=extras.ssl_context) if socks
                 else aiohttp.TCPConnector(limit=limit, ssl=extras.ssl_context,
                                           resolver=resolver(settings.dns_servers),
                                           ttl_dns_cache=None))
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=_cookie_jar(extras.cookies),
        timeout=aiohttp.ClientTimeout(
            total=settings.timeouts.total_s,
            sock_connect=settings.timeouts.connect_s,
            sock_read=settings.timeouts.read_s,
        ),
        headers=base,
        requote_redirect_url=False,  # hops.py follows redirects; this is in case it ever doesn't
        auto_decompress=False,
        # aiohttp's 8 KiB per header line refuses real answers (a 9 kB Set-Cookie); curl
        # takes 100 kB. Beyond this, failures.py says the header was oversized, never its value.
        max_line_size=MAX_HEADER_BYTES,
        max_field_size=MAX_HEADER_BYTES,
        read_bufsize=CHUNK_BYTES,  # smaller, and the socket pauses and resumes per chunk
    )


DNS_TIMEOUT_S = 3.0  # a resolver that does not answer: each try waits this long
DNS_TRIES = 2


def resolver(servers: Sequence[str] = ()) -> aiohttp.abc.AbstractResolver:
    """c-ares on the loop (aiodns): no thread per lookup, /etc/hosts honoured, a timeout of
    its own; the answers are kept for the run (the connector's cache, ttl None). Python's
    getaddrinfo on the loop's threads only where aiodns cannot be imported."""
    try:
        import aiodns  # noqa: F401  # aiohttp's AsyncResolver needs it
    except ImportError:
        return aiohttp.ThreadedResolver()
    if servers:
        return aiohttp.AsyncResolver(nameservers=list(servers), timeout=DNS_TIMEOUT_S,
                                     tries=DNS_TRIES)
    return aiohttp.AsyncResolver(timeout=DNS_TIMEOUT_S, tries=DNS_TRIES)


def _cookie_jar(cookies: Sequence[tuple[Morsel[str], URL]]) -> aiohttp.abc.AbstractCookieJar:
    """No jar at all without --cookies: a million answers' Set-Cookie must not pile up."""
    if not cookies:
        return aiohttp.DummyCookieJar()
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: also for hosts given as IP addresses
    for morsel, url in cookies:
        jar.update_cookies({morsel.key: morsel}, response_url=url)
    return jar
