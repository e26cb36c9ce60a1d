"""Meaning of URL-list entries, pure: validate, deduplicate, and decide each output path.

Automatic paths are `HOST[_PORT]/STEM-HASH.EXT`: HASH is 16 hex digits of the URL's digest, so
the path depends on the URL alone, two URLs never share one, and no directory ever has to be
a file too (`/dir`, `/dir/` and `/dir/x` all land side by side in the host folder).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import urllib.parse
from dataclasses import dataclass

from yarl import URL

from bulkfetch.lists.seen import DIGEST_BYTES, DigestSet
from bulkfetch.models import Job, Result, SafeRelPath, Status, UrlLine
from bulkfetch.show.outgoing import lossless, make_result
from bulkfetch.store.layout import STATE_DIR, clean, tagged_leaf

_SEGMENT_MAX_BYTES = 255
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HOSTS_KEPT = 10_000
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # a list's byte that was not UTF-8


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that cannot be fetched, with a one-line reason that starts with where it is."""

    where: str
    url: str
    error: str

    def as_result(self) -> Result:
        return make_result(self.url, Status.FAILED, error=self.error)


def parse_url(text: str) -> URL | None:
    """The URL if it is absolute http(s) with a host, else None."""
    try:
        url = URL(text)
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.raw_host:
        return None
    return url


def host_key(url: URL) -> str:
    """What politeness counts by: the host, lower-cased, and the port (as aiohttp's pool)."""
    return f"{(url.raw_host or '').lower()}:{url.port}"


def host_folder(url: URL) -> str:
    """The folder of a URL's host under --out: `host`, or `host_PORT` for another port."""
    host = clean((url.raw_host or "").replace(":", "-")) or "_"
    return host if url.is_default_port() else f"{host}_{url.explicit_port}"


def auto_path(url: URL, url_digest: bytes, host: str | None = None) -> SafeRelPath:
    """The output path that depends only on the URL (`host`: its `host_folder`, if known)."""
    host = host or host_folder(url)
    last = url.raw_path.rstrip("/").rsplit("/", 1)[-1]
    leaf = urllib.parse.unquote(last) if "%" in last else last
    return SafeRelPath(f"{host}/{tagged_leaf(leaf, url_digest.hex()[:16])}")


def check_name(name: str) -> SafeRelPath:
    """NAME normalised to a path inside --out; ValueError says why it is not acceptable."""
    if "\x00" in name or "\\" in name:
        raise ValueError("has a NUL or a backslash; use / between folders")
    if _UNDECODABLE.search(name):
        raise ValueError("holds bytes that are not UTF-8")
    if name.startswith("/"):
        raise ValueError("is absolute; it must be relative to --out")
    if name.endswith("/"):
        raise ValueError("names a folder, not a file")
    norm = posixpath.normpath(name)
    parts = norm.split("/")
    if norm == "." or parts[0] == "..":
        raise ValueError("leaves --out")
    if parts[0] == STATE_DIR:
        raise ValueError(f"is inside bulkfetch's own {STATE_DIR}/ folder")
    if any(len(p.encode("utf-8", "surrogatepass")) > _SEGMENT_MAX_BYTES for p in parts):
        raise ValueError(f"has a part longer than {_SEGMENT_MAX_BYTES} bytes")
    return SafeRelPath(norm)


@dataclass(frozen=True, slots=True)
class Repeat:
    """A URL listed again with another NAME or sha256: said once, never silently dropped."""

    where: str
    url: str

    def message(self) -> str:
        return (f"{self.where}: {self.url!r} is listed again with another NAME or sha256; "
                "the first line wins, this one is ignored")


def _variant(line: UrlLine) -> bytes:
    return digest(f"{line.url}\0{line.name or ''}\0{(line.sha256 or '').lower()}")


def _marked(url_digest: bytes) -> bytes:
    return hashlib.blake2b(b"\x01" + url_digest, digest_size=DIGEST_BYTES).digest()


class Planner:
    """Turns entries into jobs, in order, remembering only digests of what it has seen."""

    def __init__(self, *, reserved: frozenset[str] = frozenset()) -> None:
        self._urls = DigestSet()
        self._names = DigestSet(16)
        self._folders = DigestSet(16)
        # Lines with a NAME or sha256: their (URL, NAME, sha256), and a mark on their URL, so
        # that a repeat saying something else is noticed. Plain lines cost nothing here.
        self._variants = DigestSet(16)
        self._reported: set[bytes] = set()  # URLs whose repeats were reported (rare)
        self._reserved = reserved
        # (scheme, host, port) -> (host_folder, host_key): a list has few hosts and many URLs.
        self._hosts: dict[tuple[str, str | None, int | None], tuple[str, str]] = {}

    def plan(self, line: UrlLine) -> Job | Rejected | Repeat | None:
        """A job or a rejection; for a URL already planned, None (the first line wins), or a
        Repeat when this line asks for another NAME or sha256 (reported once per URL)."""
        url_digest = digest(line.url)
        if not self._urls.add(url_digest):
            return self._repeat(line, url_digest)
        if line.name is not None or line.sha256 is not None:
            self._variants.add(_variant(line))
            self._variants.add(_marked(url_digest))
        return self.place(line, url_digest)

    def _repeat(self, line: UrlLine, url_digest: bytes) -> Repeat | None:
        if line.name is not None or line.sha256 is not None:
            same = _variant(line) in self._variants
        else:
            same = _marked(url_digest) not in self._variants
        if same or url_digest in self._reported:
            return None
        self._reported.add(url_digest)
        return Repeat(line.where, line.url)

    def place(self, line: UrlLine, url_digest: bytes) -> Job | Rejected:
        """The job or the rejection for an admitted line. NAMEs are claimed here, so every
        named line must be placed, in list order; an unnamed line affects no other line."""
        if _UNDECODABLE.search(line.url):
            return Rejected(line.where, line.url, f"{line.where}: not an http(s) URL: it holds "
                            f"bytes that are not UTF-8: '{lossless(line.url)}'")
        url = parse_url(line.url)
        if url is None:
            return Rejected(line.where, line.url, f"{line.where}: not an http(s) URL: {line.url!r}")
        checksum = line.sha256.lower() if line.sha256 is not None else None
        if checksum is not None and not _SHA256_HEX.fullmatch(checksum):
            error = f"{line.where}: not a sha256 (64 hex digits): {line.sha256!r}"
            return Rejected(line.where, line.url, error)
        folder, host = self._host(url)
        if line.name is None:
            path = auto_path(url, url_digest, folder)
        else:
            try:
                path = self._claim(check_name(line.name))
            except ValueError as exc:
                return Rejected(line.where, line.url, f"{line.where}: NAME {line.name!r} {exc}")
        return Job(
            where=line.where, url=line.url, path=path, host=host, sha256=checksum,
            auto=line.name is None,
        )

    def _host(self, url: URL) -> tuple[str, str]:
        key = (url.scheme, url.raw_host, url.explicit_port)
        if (known := self._hosts.get(key)) is None:
            if len(self._hosts) >= _HOSTS_KEPT:  # a list of a million hosts: memory stays flat
                self._hosts.clear()
            known = self._hosts[key] = (host_folder(url), host_key(url))
        return known

    def _claim(self, path: SafeRelPath) -> SafeRelPath:
        """Reserve a NAME so that no other NAME is the same file or needs it as a folder."""
        parts = path.split("/")
        folders = [digest("/".join(parts[:i])) for i in range(1, len(parts))]
        own = digest(path)
        if path in self._reserved:
            raise ValueError("is where the manifest goes")
        if own in self._names:
            raise ValueError("is already used by an earlier line")
        if own in self._folders or any(f in self._names for f in folders):
            raise ValueError("would make a file and a folder of one path with an earlier line")
        self._names.add(own)
        for folder in folders:
            self._folders.add(folder)
        return path
