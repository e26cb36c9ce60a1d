"""A real HTTP server on 127.0.0.1, in a thread of its own, that injects faults on request.

Routes (KEY separates the counters of different tests):
  /bytes/N[?delay=S]          N deterministic bytes after S seconds, with Content-Length
  /status/CODE                that status, with a short body
  /named?cd=VALUE             100 bytes with Content-Disposition: VALUE
  /flaky/KEY/FAILS/CODE[?retry_after=V]   CODE (with Retry-After: V) FAILS times, then 4 KiB
  /truncate/KEY/FAILS         FAILS times: Content-Length 100000 but 50000 bytes and a close
  /reset/KEY/FAILS            FAILS times: the connection is reset before any answer
  /stall/S[?before=N]         headers and N (1000) of 2N bytes, then S seconds of silence
  /redirect/N                 a chain of N redirects ending at 1000 bytes
  /loop                       redirects to itself
  /to-ftp                     redirects to an ftp:// URL
  /go?to=URL                  redirects to URL
  /headers                    the request headers as JSON
  /raw/...                    the request target exactly as it arrived, as the body
  /big-header/N               a Set-Cookie header of N bytes holding SECRET
  /gzipped                    a gzip body with Content-Encoding: gzip, whatever was asked
  /big/N                      N bytes written 1 MiB at a time
  /chunked/N                  N bytes in chunked encoding (no Content-Length)
  /ranged/NAME?size=N[&rate=B][&cut=C][&cap=R][&weak][&no_etag][&named=FILE]
                              N bytes (content set by Server.versions[NAME]) with a strong ETag
                              (weak: a weak one; no_etag: none) and an old Last-Modified, Range
                              and If-Range (either; Server.ignore_if_range: If-Range ignored);
                              B bytes/s at most; the first request of NAME drops the connection
                              after C bytes; a 206 carries at most R bytes
  /fault/NAME?size=N           a fault on NAME's first request (fault_kind), then N bytes
  /static/...                 files under Server.root, by aiohttp's FileResponse: ETag,
                              Last-Modified, conditional GET (304), Range and If-Range
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


def fault_kind(name: str) -> str:
    """What the first request of /fault/NAME meets: mostly nothing; else a 503, a reset
    before the headers, a body cut short, a body stalled; a few get 429 + Retry-After: 1 (each
    pauses the whole host for a second)."""
    roll = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 1000
    for limit, kind in ((2, "429"), (100, "503"), (200, "reset"), (300, "cut"), (340, "stall")):
        if roll < limit:
            return kind
    return "ok"


def body(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


GZIPPED = gzip.compress(body("gzipped", 50_000))
SECRET = "S3CRET-session-token"
OTHER_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


@dataclass
class Stats:
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    peers: set[int] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    times: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic, host, path)
    in_flight: int = 0
    max_in_flight: int = 0
    max_hosts_in_flight: int = 0  # how many hosts had a request in flight at once, at most
    host_in_flight: Counter[str] = field(default_factory=Counter)
    host_max_in_flight: Counter[str] = field(default_factory=Counter)

    def count(self, path: str) -> int:
        return sum(1 for p in self.paths if p.split("?")[0] == path)


STOP_WAIT_S = 5.0


def serve_on(loop: asyncio.AbstractEventLoop, main: Coroutine[object, object, None]) -> None:
    """A test server's thread: `main` on `loop` until it returns; then handlers still
    stalled are cancelled and seen to their end, and the loop is closed."""
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main)
    left = asyncio.all_tasks(loop)
    for task in left:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    loop.close()


class Server:
    ipv6 = False  # also listening on [::1]

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.stats = Stats()
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0
        self.root = Path(tempfile.mkdtemp(prefix="bulkfetch-served-"))
        self.versions: dict[str, int] = {}
        self.ignore_if_range: set[str] = set()  # /ranged/NAME answers every Range with a 206
        self.ignore_ranges: set[str] = set()  # /ranged/NAME says Accept-Ranges, answers 200

    @property
    def base(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def url_on(self, host: str, path: str) -> str:
        """The same server reached as another host: one of OTHER_HOSTS, or 127.0.0.1."""
        return f"{'https' if self._ssl else 'http'}://{host}:{self.port}{path}"

    def start(self) -> Server:
        self._thread.start()
        self._started.wait(10)
        return self

    def reset(self) -> None:
        self.stats = Stats()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(STOP_WAIT_S)
        assert not self._thread.is_alive(), f"the test server did not stop in {STOP_WAIT_S}s"
        shutil.rmtree(self.root, ignore_errors=True)

    def _serve(self) -> None:
        serve_on(self._loop, self._main())

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        # A test may leave a handler stalled (/stall/60): stopping cancels it at once instead
        # of waiting for it (aiohttp's default), so the session ends in a moment.
        runner = web.AppRunner(self._app(), handle_signals=False, access_log=None,
                               shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024, ssl_context=self._ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        for host in OTHER_HOSTS:  # more loopback addresses, the same port: more hosts
            await web.TCPSite(runner, host, self.port, ssl_context=self._ssl).start()
        with contextlib.suppress(OSError):  # and ::1, where the machine has IPv6
            await web.TCPSite(runner, "::1", self.port, ssl_context=self._ssl).start()
            self.ipv6 = True
        self._started.set()
        await self._stop_event.wait()
        await runner.cleanup()

    def _app(self) -> web.Application:
        @web.middleware
        async def track(request: web.Request, handler: web.Handler) -> web.StreamResponse:
            stats = self.stats
            stats.paths.append(request.path_qs)
            stats.times.append((time.monotonic(), request.headers.get("Host", ""), request.path))
            stats.headers.append(dict(request.headers))
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if peer:
                stats.peers.add(peer[1])
            host = request.headers.get("Host", "").split(":")[0]
            stats.in_flight += 1
            stats.host_in_flight[host] += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            stats.host_max_in_flight[host] = max(
                stats.host_max_in_flight[host], stats.host_in_flight[host]
            )
            busy_hosts = sum(1 for n in stats.host_in_flight.values() if n > 0)
            stats.max_hosts_in_flight = max(stats.max_hosts_in_flight, busy_hosts)
            try:
                return await handler(request)
            finally:
                stats.in_flight -= 1
                stats.host_in_flight[host] -= 1

        async def note_status(request: web.Request, response: web.StreamResponse) -> None:
            self.stats.statuses.append(response.status)

        app = web.Application(middlewares=[track])
        app.on_response_prepare.append(note_status)
        r = app.router
        r.add_static("/static/", self.root)
        r.add_get("/bytes/{n}", self._bytes)
        r.add_get("/status/{code}", self._status)
        r.add_get("/flaky/{key}/{fails}/{code}", self._flaky)
        r.add_get("/truncate/{key}/{fails}", self._truncate)
        r.add_get("/reset/{key}/{fails}", self._reset)
        r.add_get("/stall/{secs}", self._stall)
        r.add_get("/redirect/{n}", self._redirect)
        r.add_get("/loop", self._loop_redirect)
        r.add_get("/to-ftp", self._to_ftp)
        r.add_get("/go", self._go)
        r.add_get("/headers", self._headers)
        r.add_get("/gzipped", self._gzipped)
        r.add_get("/big/{n}", self._big)
        r.add_get("/ranged/{name}", self._ranged)
        r.add_get("/chunked/{n}", self._chunked)
        r.add_get("/raw/{tail:.*}", self._raw)
        r.add_get("/big-header/{n}", self._big_header)
        r.add_get("/fault/{name}", self._fault)
        r.add_get("/named", self._named)
        r.add_get("/{tail:.*}", self._anything)
        return app

    def _first(self, request: web.Request) -> bool:
        """True while this KEY has failed fewer than FAILS times."""
        key = request.path
        self.stats.hits[key] += 1
        return self.stats.hits[key] <= int(request.match_info["fails"])

    async def _bytes(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", 0)))
        return web.Response(body=body(request.path, int(request.match_info["n"])))

    async def _anything(self, request: web.Request) -> web.Response:
        return web.Response(body=body(request.path_qs, 100))

    async def _named(self, request: web.Request) -> web.Response:
        """/named?cd=VALUE: 100 bytes with `Content-Disposition: VALUE`."""
        return web.Response(body=body(request.path_qs, 100),
                            headers={"Content-Disposition": request.query["cd"]})

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def _flaky(self, request: web.Request) -> web.Response:
        if self._first(request):
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            return web.Response(status=int(request.match_info["code"]), headers=headers)
        return web.Response(body=body(request.path, 4096))

    async def _truncate(self, request: web.Request) -> web.StreamResponse:
        if not self._first(request):
            return web.Response(body=body(request.path, 100_000))
        resp = web.StreamResponse()
        resp.content_length = 100_000
        await resp.prepare(request)
        await resp.write(body(request.path, 50_000))
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return resp

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        if not self._first(request):
            return web.Response(body=body(request.path, 2048))
        assert request.transport is not None
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request.transport.abort()
        await asyncio.sleep(1)
        return web.Response()

    async def _fault(self, request: web.Request) -> web.StreamResponse:
        """The soak's origin: a fault on the first request of NAME, chosen by NAME's digest
        (FAULT_KINDS), then its body; ?size=N."""
        name, size = request.match_info["name"], int(request.query.get("size", 1000))
        self.stats.hits[name] += 1
        data = body(request.path, size)
        kind = fault_kind(name) if self.stats.hits[name] == 1 else "ok"
        if kind in ("503", "429"):
            headers = {"Retry-After": "1"} if kind == "429" else {}
            return web.Response(status=int(kind), headers=headers)
        assert request.transport is not None
        if kind == "reset":  # before any header
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()
            return web.Response()
        resp = web.StreamResponse()
        resp.content_length = size
        await resp.prepare(request)
        if kind == "ok":
            await resp.write(data)
            return resp
        await resp.write(data[: size // 2])
        if kind == "stall":  # past the soak's --read-timeout
            await asyncio.sleep(3)
        request.transport.close()  # "cut": the body ends short
        return resp

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        before = int(request.query.get("before", 1000))
        resp = web.StreamResponse()
        resp.content_length = 2 * before
        await resp.prepare(request)
        await resp.write(body(request.path, before))
        await asyncio.sleep(float(request.match_info["secs"]))
        await resp.write(body(request.path, before))
        return resp

    async def _redirect(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(body=body("redirect-end", 1000))
        raise web.HTTPFound(f"/redirect/{n - 1}")

    async def _loop_redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def _to_ftp(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://127.0.0.1/x")

    async def _go(self, request: web.Request) -> web.Response:
        # Not HTTPFound: it would re-quote the Location.
        return web.Response(status=302, headers={"Location": request.query["to"]})

    async def _big_header(self, request: web.Request) -> web.Response:
        value = f"session={SECRET}" + "x" * int(request.match_info["n"])
        return web.Response(text="ok", headers={"Set-Cookie": value})

    async def _raw(self, request: web.Request) -> web.Response:
        return web.Response(text=request.raw_path)

    async def _headers(self, request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    async def _gzipped(self, request: web.Request) -> web.Response:
        return web.Response(body=GZIPPED, headers={"Content-Encoding": "gzip"})

    def ranged_body(self, name: str, size: int) -> bytes:
        return body(f"{name}:{self.versions.get(name, 1)}", size)

    async def _ranged(self, request: web.Request) -> web.StreamResponse:
        name, query = request.match_info["name"], request.query
        version = self.versions.get(name, 1)
        data = self.ranged_body(name, int(query["size"]))
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        modified = f"Sun, {version:02d} Nov 2026 00:00:00 GMT"  # long before Date: strong
        headers = {"Accept-Ranges": "bytes", "Last-Modified": modified}
        if "named" in query:  # a download that names itself (Content-Disposition)
            headers["Content-Disposition"] = f'attachment; filename="{query["named"]}"'
        if "weak" in query:
            etag = f"W/{etag}"
        if "no_etag" not in query:
            headers["ETag"] = etag
        wanted = request.headers.get("Range", "")
        if_range = request.headers.get("If-Range")
        honoured = name in self.ignore_if_range or if_range in (None, etag, modified)
        asked = wanted[6:].split("-") if wanted.startswith("bytes=") and honoured else ["0", ""]
        if name in self.ignore_ranges:
            asked = ["0", ""]
        start, end = int(asked[0]), len(data)
        if asked[1]:  # bytes=A-B: up to B, inclusive
            end = min(end, int(asked[1]) + 1)
        ranged = start > 0 or end < len(data)
        if start and "cap" in query:  # a CDN that serves ranges of at most `cap` bytes
            end = min(end, start + int(query["cap"]))
        resp = web.StreamResponse(status=206 if ranged else 200, headers=headers)
        if ranged:
            resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        resp.content_length = end - start
        await resp.prepare(request)
        self.stats.hits[name] += 1
        cut = int(query.get("cut", 0)) if self.stats.hits[name] == 1 else 0
        rate = int(query.get("rate", 0))
        sent, step = start, 64 * 1024
        while sent < end:
            if cut and sent >= cut:
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(data[sent : min(end, sent + step)])
            sent += step
            if rate:
                await self._pause(request, step / rate)
        return resp

    @staticmethod
    async def _pause(request: web.Request, seconds: float) -> None:
        """A pause between writes that ends early when the client has hung up, so that the
        counts of requests in flight follow the client's connections closely."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if request.transport is None or request.transport.is_closing():
                raise asyncio.CancelledError  # ends the handler, as aiohttp does on a hang-up
            await asyncio.sleep(min(0.001, deadline - time.monotonic()))

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        left = int(request.match_info["n"])
        while left > 0:
            await resp.write(body("chunked", min(left, 256 * 1024)))
            left -= 256 * 1024
        return resp

    async def _big(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        resp = web.StreamResponse()
        resp.content_length = n
        await resp.prepare(request)
        block = body("big", 1 << 20)
        sent = 0
        while sent < n:
            part = block[: min(len(block), n - sent)]
            await resp.write(part)
            sent += len(part)
        return resp
