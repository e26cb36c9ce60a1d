"""A forward HTTP proxy on 127.0.0.1 that counts what passes through it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web


class Proxy:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (absolute URL, Proxy-Authorization)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession(auto_decompress=False) as client:
            async def forward(request: web.Request) -> web.Response:
                target = f"http://{request.headers['Host']}{request.rel_url}"
                self.seen.append((target, request.headers.get("Proxy-Authorization")))
                async with client.get(target, allow_redirects=False) as upstream:
                    kept = {k: v for k, v in upstream.headers.items()
                            if k.lower() in ("location", "etag", "last-modified")}
                    return web.Response(status=upstream.status, body=await upstream.read(),
                                        headers=kept)

            app = web.Application()
            app.router.add_get("/{tail:.*}", forward)
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()


class RealProxy:
    """proxy.py (a real forward proxy: CONNECT tunnels, Basic auth) in a process of its own."""

    def __init__(self, folder: Path, *, basic_auth: str) -> None:
        self._folder = folder
        self._basic_auth = basic_auth
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> RealProxy:
        port_file = self._folder / "port"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
             "--port-file", str(port_file), "--basic-auth", self._basic_auth,
             "--num-acceptors", "1", "--threaded", "--log-level", "ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self._folder,
        )
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "proxy.py did not start"
            time.sleep(0.05)
        self.port = int(port_file.read_text().split()[0])
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
