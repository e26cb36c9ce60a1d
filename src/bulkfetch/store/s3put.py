"""One-PUT bodies into the bucket at the cost of one aiohttp request.

botocore spends about 1.5 ms of CPU on a small PutObject (its request model, event hooks,
signing, response parsing); the body's own fetch costs a third of that. A body that goes up in
one PUT is already whole in memory with its sha256 known, so the request is simple: signed
here (`sigv4`), sent over botocore's own aiohttp session (its pool, TLS trust, timeouts and
proxy), to the URL botocore itself would use (`s3.put_route`), with the credentials object
botocore signs with (`s3.connect`). Nothing is read twice from the environment.

This path answers only what it is sure of: 200 (the object is there), 412 and 501 (raised as
botocore raises them, for bucket.py's one path of decisions). Anything else, a refusal, a
3xx, a 5xx, a dropped connection, leaves the PUT to botocore, with its retries, region
redirects and refreshed tokens: a failure costs what it cost before. Create-only makes that
safe: a PUT that landed unseen is found by the next one's 412. After such a PUT the route is
asked again (botocore may have learnt the bucket's region from a redirect meanwhile), and
after MISSES_OFF in a row the run's PUTs are all botocore's: never every body sent twice.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp
import yarl
from aiohttp.payload import TOO_LARGE_BYTES_BODY

from bulkfetch import __version__
from bulkfetch.models import Bucket
from bulkfetch.store import s3
from bulkfetch.store.sigv4 import Keys, Scope, Signer

if TYPE_CHECKING:
    from aiobotocore.credentials import AioCredentials
    from types_aiobotocore_s3 import S3Client

AGENT = f"bulkfetch/{__version__}"
MISSES_OFF = 3  # PUTs left to botocore in a row, each after the route was asked again
_DECIDED = frozenset({412, 501})  # bucket.py decides these: the key is taken; no conditions
_ERROR_BYTES = 64 * 1024
_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")


class FastPut:
    """Puts whole bodies at keys of one bucket, signed here; see the module's docstring."""

    def __init__(self, *, base: str, signer: Signer, credentials: AioCredentials,
                 session: aiohttp.ClientSession, proxy: str | None,
                 proxy_headers: dict[str, str],
                 relearn: Callable[[], Awaitable[tuple[str, Signer] | None]] | None = None,
                 clock: Callable[[], datetime.datetime] | None = None) -> None:
        self._base = base
        self._signer = signer
        self._credentials = credentials
        self._session = session
        self._proxy = proxy
        self._proxy_headers = proxy_headers or None
        self._relearn = relearn  # the route again, as botocore would send now
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._stale = False  # a PUT was left to botocore: ask the route again first
        self.misses = 0  # PUTs left to botocore in a row
        self.sent = 0  # PUTs answered here

    @classmethod
    async def of(cls, client: S3Client, credentials: AioCredentials | None,
                 bucket: Bucket) -> FastPut | None:
        """The fast path into `bucket`, or None where botocore must send every PUT: no
        credentials (it raises its own error), a URL that is not plain SigV4, or an
        aiobotocore whose session cannot be reached."""
        if credentials is None:
            return None

        async def route() -> tuple[str, Signer] | None:
            found = await s3.put_route(client, bucket)
            if found is None:
                return None
            base, region, service = found
            return base, Signer(Scope(region, service))

        first = await route()
        reached = await s3.http_session(client, first[0]) if first else None
        if first is None or reached is None:
            return None
        session, proxy, proxy_headers = reached
        return cls(base=first[0], signer=first[1], credentials=credentials, session=session,
                   proxy=proxy, proxy_headers=proxy_headers, relearn=route)

    async def put(self, key: str, body: bytes, *, sha256: str,
                  headers: dict[str, str]) -> bool:
        """PUT `body` at `key` with `headers` (metadata, type, conditions). True: it is
        there. False: botocore is to send it. A 412 or 501 is raised as botocore's error."""
        if self.misses >= MISSES_OFF or not await self._fresh():
            return False  # this run's PUTs are botocore's from now on
        done = await self._send(key, body, sha256, headers)
        if done:
            self.misses, self.sent = 0, self.sent + 1
        else:
            # botocore sends it, and learns meanwhile what we may not know (the bucket's
            # region, from its redirect): the route is asked again before the next PUT.
            self.misses += 1
            self._stale = True
        return done

    async def _fresh(self) -> bool:
        if self._stale and self._relearn is not None:
            self._stale = False
            route = await self._relearn()
            if route is None:
                self.misses = MISSES_OFF
                return False
            self._base, self._signer = route
        return True

    async def _send(self, key: str, body: bytes, sha256: str, headers: dict[str, str]) -> bool:
        url = self._base + quote(key, safe="/~")
        frozen = await self._credentials.get_frozen_credentials()
        if not (frozen.access_key and frozen.secret_key):
            return False  # botocore raises its own error for these
        keys = Keys(frozen.access_key, frozen.secret_key, frozen.token)
        signed = self._signer.sign("PUT", url, headers, payload_sha256=sha256, keys=keys,
                                   now=self._clock())
        # Unsigned, as botocore leaves them; an error's text uncompressed, as botocore asks.
        signed.update({"user-agent": AGENT, "accept-encoding": "identity"})
        try:
            async with self._session.put(
                yarl.URL(url, encoded=True), data=_payload(body, signed), headers=signed,
                proxy=self._proxy, proxy_headers=self._proxy_headers,
                allow_redirects=False,  # a 3xx is botocore's: a 200 elsewhere is not stored
            ) as answer:
                if answer.status == 200:
                    await answer.read()
                    return True
                if answer.status not in _DECIDED:
                    return False
                found = _CODE.search(await answer.content.read(_ERROR_BYTES))
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return False  # ValueError: a header aiohttp will not send; botocore says why
        code = found.group(1).decode() if found else str(answer.status)
        raise s3.client_error(answer.status, code, "PutObject")


def _payload(body: bytes, headers: dict[str, str]) -> bytes | AsyncIterator[memoryview]:
    """The body as aiohttp takes it without a warning: past 1 MiB, aiohttp warns that bytes
    "might lock the event loop" (they do not: the transport takes them whole) and would have
    io.BytesIO, read on a thread 64 KiB at a time. Slices of the bytes, then, with their
    length given (so not chunked)."""
    if len(body) <= TOO_LARGE_BYTES_BODY:
        return body
    headers["content-length"] = str(len(body))

    async def slices() -> AsyncIterator[memoryview]:
        view = memoryview(body)
        for start in range(0, len(body), TOO_LARGE_BYTES_BODY):
            yield view[start:start + TOO_LARGE_BYTES_BODY]

    return slices()


def request_headers(metadata: dict[str, str], content_type: str | None, *,
                    create_only: bool) -> dict[str, str]:
    """What botocore would send for PutObject's Metadata, ContentType and IfNoneMatch."""
    headers = {f"x-amz-meta-{name}": value for name, value in metadata.items()}
    if content_type:
        headers["content-type"] = content_type
    if create_only:
        headers["if-none-match"] = "*"
    return headers
