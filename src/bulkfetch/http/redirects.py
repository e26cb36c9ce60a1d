"""One URL's requests: the listed one and each redirect hop, every hop decided afresh.

aiohttp follows redirects with the proxy chosen for the first URL and re-quotes each target
(`/a%3Bb` goes out as `/a;b`). We follow them here instead, as curl and requests do: each hop
is sent exactly as written (the list, then each Location), through the proxy its own URL calls
for (NO_PROXY, and HTTPS_PROXY after an http -> https hop), and credentials (--user, and
Authorization, Proxy-Authorization and Cookie given with -H) go only to the listed origin.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from bulkfetch.http.creds import Credentials, RequestOptions

REDIRECTS = frozenset({301, 302, 303, 307, 308})
UNUSABLE = "redirected to an unusable URL"
HOME_ONLY_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# What may not appear raw in a request target (RFC 3986 2, WHATWG's percent-encode sets):
# these alone are escaped (as UTF-8); every escape already written is sent as it is.
_NOT_IN_URL = re.compile(r'[^\x21-\x7e]|["<>\\^`{|}]')


class TooManyRedirects(Exception):
    """More hops than --max-redirects."""


class BadRedirect(Exception):
    """A Location that is not an http(s) URL we can follow."""


def as_listed(text: str) -> URL:
    """The URL to send: the text exactly as written, escapes and all. Only characters that
    cannot appear in a request are escaped, and a non-ASCII host is IDNA-encoded."""
    if _NOT_IN_URL.search(text) is None:
        return URL(text, encoded=True)
    scheme, netloc, path, query, _ = urllib.parse.urlsplit(text)
    if not netloc.isascii():
        netloc = URL(f"http://{netloc}").raw_authority
    head = (f"{scheme}:" if scheme else "") + (f"//{_escape(netloc)}" if netloc else "")
    tail = f"?{_escape(query)}" if query or "?" in text.split("#", 1)[0] else ""
    return URL(f"{head}{_escape(path)}{tail}", encoded=True)


def _escape(text: str) -> str:
    # surrogateescape: a byte of a Location that was not UTF-8 goes out as that very byte.
    return _NOT_IN_URL.sub(
        lambda m: urllib.parse.quote(m[0], safe="", errors="surrogateescape"), text)


class Hops:
    """Sends a URL's requests over the one session, following redirects hop by hop."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: Credentials,
        *,
        headers: Sequence[tuple[str, str]] = (),
        max_redirects: int = 10,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._max_redirects = max_redirects
        self._home_headers = CIMultiDict(headers)
        self._away_headers = CIMultiDict(
            (name, value) for name, value in headers if name.lower() not in HOME_ONLY_HEADERS
        )

    @contextlib.asynccontextmanager
    async def get(
        self, url: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The final answer for `url`, after at most --max-redirects hops. `headers` (the
        conditions, Range) go with every hop."""
        listed = hop = as_listed(url)
        for _ in range(self._max_redirects + 1):
            # Only a redirect can leave the listed origin (origin() builds a URL: not per file).
            at_home = hop is listed or hop.origin() == listed.origin()
            sent = self._home_headers if at_home else self._away_headers
            if headers:
                sent = CIMultiDict(sent)
                sent.update(headers)
            target, options = _credentials(hop, sent,
                                           self._credentials.request_options(hop, at_home=at_home))
            async with self._session.get(
                target, headers=sent, allow_redirects=False, **options
            ) as resp:
                location = resp.headers.get("Location") if resp.status in REDIRECTS else None
                if location is None:
                    yield resp
                    return
            hop = _follow(hop, location)
        raise TooManyRedirects(f"too many redirects (more than {self._max_redirects}; a loop?)")


def _credentials(
    hop: URL, sent: CIMultiDict[str], options: RequestOptions
) -> tuple[URL, RequestOptions]:
    """One hop's credentials, one kind only (aiohttp refuses two at once, and raised out of
    the run): an Authorization header from -H wins; else credentials written in the URL itself
    (the list's, or a Location's) win over --user and .netrc for that URL."""
    if "Authorization" in sent:  # case-insensitive, and no walk over the headers per hop
        options.pop("auth", None)
        return (hop.with_user(None), options) if hop.raw_user is not None else (hop, options)
    if hop.raw_user is not None:
        options["auth"] = aiohttp.BasicAuth(hop.user or "", hop.password or "", "utf-8")
        return hop.with_user(None), options
    return hop, options


def _follow(base: URL, location: str) -> URL:
    try:
        target = base.join(as_listed(location))
    except ValueError:
        target = None
    if target is None or target.scheme not in ("http", "https") or not target.raw_host:
        raise BadRedirect(f"{UNUSABLE}: {location[:200]!r}")
    return target
