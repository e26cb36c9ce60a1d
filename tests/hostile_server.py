"""A hostile origin on loopback, written on raw sockets: each path answers bytes no
well-behaved server library would send (bad UTF-8 in the status line and headers, a huge
announced length), so that the client meets them exactly as they would come off the wire.

  /reason       404 with a reason phrase that is not UTF-8
  /ctype        200 with a Content-Type that is not UTF-8
  /etag         200 with an ETag that is not UTF-8 (and a good Last-Modified)
  /modified     200 with a Last-Modified that is not UTF-8
  /location     302 to a Location that is not UTF-8 (to /ctype, once decoded as bytes)
  /huge         200 announcing 10^15 bytes; sends 1 MiB blocks until the client hangs up
  /disposition  200 with a Content-Disposition holding escapes, a bell and bytes not UTF-8
  /disposition2 200 with a Content-Disposition whose filename* is not UTF-8 once decoded
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tests.server import serve_on

BODY = b"hello"
HUGE = 10**15


def _answer(status: bytes, headers: list[bytes], body: bytes = BODY) -> bytes:
    head = [b"HTTP/1.1 " + status, *headers, b"Content-Length: %d" % len(body),
            b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


ANSWERS = {
    "/reason": _answer(b"404 Not\xff\xfe Found", [], b""),
    "/ctype": _answer(b"200 OK", [b"Content-Type: text/\xff\xfeplain"]),
    "/etag": _answer(b"200 OK", [b'ETag: "\xff\xfe"',
                                 b"Last-Modified: Sun, 01 Nov 2026 00:00:00 GMT"]),
    "/modified": _answer(b"200 OK", [b"Last-Modified: Sun, 01 Nov 2026 \xff\xfe GMT"]),
    "/location": _answer(b"302 Found", [b"Location: /ctype?\xff\xfe"], b""),
    "/disposition": _answer(b"200 OK", [
        b"Content-Disposition: attachment; filename\x1b]0;PWNED\x07\x1b[2J; x=\xff"]),
    "/disposition2": _answer(b"200 OK", [
        b"Content-Disposition: attachment; filename*=UTF-8''%ff%1b%5b2J.bin"]),
}


class HostileServer:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0
        self.seen: list[str] = []  # request lines, as they came

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HostileServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def _serve(self) -> None:
        serve_on(self._loop, self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            line = (await reader.readline()).decode("latin-1")
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            self.seen.append(line.strip())
            path = line.split()[1].split("?")[0] if len(line.split()) > 1 else "/"
            if path == "/huge":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUGE)
                block = b"\0" * (1 << 20)
                while True:  # until the client hangs up
                    writer.write(block)
                    await writer.drain()
            writer.write(ANSWERS.get(path, _answer(b"404 Not Found", [], b"")))
            await writer.drain()
        writer.close()
