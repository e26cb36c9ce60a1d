"""Where a request goes through and what it carries: proxies, .netrc credentials, cookies.

Everything here is read once at startup (environment, files); per request it is a dict lookup.
"""

from __future__ import annotations

import http.cookiejar
import http.cookies
import netrc
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import aiohttp
from yarl import URL

from bulkfetch.errors import SettingsError


@dataclass
class Proxies:
    """--proxy for everything, or HTTP_PROXY / HTTPS_PROXY / NO_PROXY from the environment.
    A SOCKS --proxy is no per-request option: the session's connector goes through it
    (`socks`), for every request."""

    forced: str | None = None
    by_scheme: dict[str, str] = field(default_factory=dict)
    socks: str | None = None
    _bypass: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def from_env(cls, forced: str | None) -> Proxies:
        if forced is not None and URL(forced).scheme.startswith("socks"):
            return cls(socks=forced)
        if forced is not None:
            url = URL(forced)
            if url.scheme not in ("http", "https") or not url.host:
                raise SettingsError(f"--proxy {forced!r}: expected http://[user:password@]host:port")
            return cls(forced=forced)
        found = urllib.request.getproxies_environment()
        return cls(by_scheme={k: v for k, v in found.items() if k in ("http", "https")})

    def for_url(self, url: URL) -> str | None:
        if self.forced is not None:
            return self.forced
        proxy = self.by_scheme.get(url.scheme)
        if proxy is None or url.host is None:
            return None
        if url.host not in self._bypass:
            self._bypass[url.host] = bool(urllib.request.proxy_bypass(url.host))
        return None if self._bypass[url.host] else proxy


def netrc_logins(path: Path | None = None) -> dict[str, tuple[str, str]]:
    """host -> (login, password) from $NETRC or ~/.netrc."""
    where = path or Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        parsed = netrc.netrc(str(where))
    except FileNotFoundError as exc:  # asked for, and not there: a HOME that is not the user's
        raise SettingsError(f"--netrc: {str(where)!r}: no such file (set NETRC=FILE, or drop "
                            f"--netrc)") from exc
    except OSError as exc:
        raise SettingsError(f"--netrc: {str(where)!r}: {exc.strerror or exc}") from exc
    except netrc.NetrcParseError as exc:
        raise SettingsError(f"--netrc: {exc}") from exc
    return {
        host: (login or "", password or "")
        for host, (login, _, password) in parsed.hosts.items()
    }


def load_cookies(path: Path) -> list[tuple[http.cookies.Morsel[str], URL]]:
    """Cookies from a Netscape cookies.txt, each with the URL it would be set by."""
    jar = http.cookiejar.MozillaCookieJar(str(path))
    try:
        # Expiry 0 marks a session cookie in cookies.txt (curl writes it so): keep those.
        jar.load(ignore_discard=True, ignore_expires=True)
    except OSError as exc:
        raise SettingsError(f"--cookies {str(path)!r}: {exc.strerror or exc}") from exc
    except http.cookiejar.LoadError as exc:
        raise SettingsError(f"--cookies {str(path)!r}: {exc}") from exc
    found = []
    now = time.time()
    for cookie in jar:
        if cookie.expires and cookie.expires < now:
            continue
        morsel: http.cookies.Morsel[str] = http.cookies.Morsel()
        morsel.set(cookie.name, cookie.value or "", cookie.value or "")
        morsel["path"] = cookie.path
        if cookie.domain_specified:
            morsel["domain"] = cookie.domain
        if cookie.secure:
            morsel["secure"] = True
        host = cookie.domain.lstrip(".")
        found.append((morsel, URL.build(scheme="https" if cookie.secure else "http", host=host)))
    return found


def socks_connector(proxy: str, **options: Any) -> aiohttp.TCPConnector:
    """A connector whose every connection goes through the SOCKS proxy `proxy`."""
    from aiohttp_socks import ProxyConnector

    url = URL(proxy)
    scheme = {"socks5h": "socks5", "socks4a": "socks4"}.get(url.scheme, url.scheme)
    return ProxyConnector.from_url(str(url.with_scheme(scheme)),
                                   rdns=url.scheme in ("socks5h", "socks4a"), **options)


class RequestOptions(TypedDict, total=False):
    proxy: str
    auth: aiohttp.BasicAuth


@dataclass
class Credentials:
    """Per request: the proxy to go through and the Basic credentials to send, if any."""

    proxies: Proxies = field(default_factory=Proxies)
    user: tuple[str, str] | None = None
    logins: dict[str, tuple[str, str]] = field(default_factory=dict)

    def request_options(self, url: URL, *, at_home: bool = True) -> RequestOptions:
        """Keyword arguments for one hop's `session.get`: the proxy for this hop's URL, and the
        Basic credentials: --user only on the listed origin (`at_home`), a netrc login on its
        own host. Empty (and cheap) when nothing is configured."""
        if self.user is None and not self.logins and not (self.proxies.forced or
                                                          self.proxies.by_scheme):
            return {}
        options: RequestOptions = {}
        if (proxy := self.proxies.for_url(url)) is not None:
            options["proxy"] = proxy
        login = self.user if at_home else None
        if login is None and url.host:
            login = self.logins.get(url.host)
        if login is not None:
            options["auth"] = aiohttp.BasicAuth(*login, encoding="utf-8")  # as curl sends it
        return options
