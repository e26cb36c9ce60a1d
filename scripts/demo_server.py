"""A small local HTTP server for the demo list in sample_urls/demo.txt (no internet needed).

    python scripts/demo_server.py [--port 8765] [--port-file FILE]

The port asked for, or, when it is taken, a free one; the port in use is written to FILE once
the server listens.

/files/NAME?size=N   N deterministic bytes (default 64 KiB), with Content-Length
/flaky/NAME          503 with Retry-After: 1 on the first request, then the file
/redirect/NAME       302 to /files/NAME

Each file has a strong ETag and a Last-Modified, and a request that names them
(If-None-Match, If-Modified-Since) gets 304 Not Modified: a second run fetches nothing again.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
from pathlib import Path

from aiohttp import web


def body(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


# Every file "changed" last at this moment (an HTTP date: whole seconds, GMT).
LAST_MODIFIED = "Tue, 01 Dec 2026 09:00:00 GMT"


def answer(request: web.Request, name: str, size: int) -> web.Response:
    """The file, or 304 when the request's validators say the client has it."""
    etag = '"' + hashlib.sha256(f"{name}:{size}".encode()).hexdigest()[:16] + '"'
    validators = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
    if request.headers.get("If-None-Match") == etag or (
            "If-None-Match" not in request.headers
            and request.headers.get("If-Modified-Since") == LAST_MODIFIED):
        return web.Response(status=304, headers=validators)
    return web.Response(body=body(name, size), headers=validators)


def make_app() -> web.Application:
    seen: set[str] = set()

    async def files(request: web.Request) -> web.Response:
        size = int(request.query.get("size", 64 * 1024))
        return answer(request, request.match_info["name"], size)

    async def flaky(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in seen:
            seen.add(name)
            return web.Response(status=503, headers={"Retry-After": "1"})
        return answer(request, name, 32 * 1024)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/files/{request.match_info['name']}")

    app = web.Application()
    app.router.add_get("/files/{name}", files)
    app.router.add_get("/flaky/{name}", flaky)
    app.router.add_get("/redirect/{name}", redirect)
    return app


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1: `port`, or a free one if that is taken."""
    for candidate in (port, 0):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise SystemExit("demo server: cannot listen on 127.0.0.1")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args()
    listening = listen(args.port)
    if args.port_file is not None:
        args.port_file.write_text(f"{listening.getsockname()[1]}\n")
    web.run_app(make_app(), sock=listening, print=None)
