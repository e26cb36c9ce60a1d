"""Many hosts by name, with a resolver that answers late: what DNS at scale costs each tool.

    .venv/bin/python bench/names.py [--rounds 3]          (root: a mount namespace, port 53)

1,000 host names (h0000.bench ... h0999.bench), 10 files each, 10,000 in all, from one nginx
listening on 127.0.0.1-127.0.0.50 that holds every answer 50 ms (ngx.sleep, as bench.py's
latency scenarios); concurrency 100, bulkfetch with --per-host 2 (the peers have no such
limit). The names are answered by a small DNS server on 127.0.0.53:53 that holds every
answer 30 ms (a resolver 30 ms away), concurrently; each tool runs in a private mount
namespace whose /etc/resolv.conf names it, so every tool's own resolver asks it (curl and
wget2 through getaddrinfo, aria2c through c-ares, bulkfetch through aiodns). Ceiling: 100 /
0.050 s = 2,000 files/s. Median wall time of the rounds, printed and appended to RESULTS.md.
Needs nginx with the lua module, curl, wget2, aria2c (./bench/run installs them). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import cast

HERE = Path(__file__).resolve().parent
WORK = Path("/dev/shm/bulkfetch-names")
PORT = 18093
HOSTS, FILES_PER_HOST, ADDRESSES = 1000, 10, 50
CONCURRENCY, HTTP_DELAY_S, DNS_DELAY_S = 100, 0.050, 0.030
LUA = ("ndk_http_module.so", "ngx_http_lua_module.so")


def address_of(host: int) -> str:
    return f"127.0.0.{1 + host % ADDRESSES}"


class LateDns(asyncio.DatagramProtocol):
    """A and AAAA questions for NAME.bench: A answered (AAAA empty), each after DNS_DELAY_S."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(DNS_DELAY_S, self._answer, data, addr)

    def _answer(self, query: bytes, addr: tuple[str, int]) -> None:
        ident, _, qdcount = struct.unpack("!HHH", query[:6])
        at, labels = 12, []
        while (size := query[at]) != 0:
            labels.append(query[at + 1:at + 1 + size].decode("ascii", "replace").lower())
            at += 1 + size
        qtype = struct.unpack("!H", query[at + 1:at + 3])[0]
        question = query[12:at + 5]
        name = ".".join(labels)
        known = name.endswith(".bench") and name[1:5].isdigit()
        answer = b""
        if known and qtype == 1:
            host = int(name[1:5])
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + socket.inet_aton(
                address_of(host))
        flags = 0x8180 | (0 if known else 3)
        head = struct.pack("!HHHHHH", ident, flags, qdcount, 1 if answer else 0, 0, 0)
        self.transport.sendto(head + question + answer, addr)


def serve_dns(ready: threading.Event, stop: threading.Event) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            LateDns, local_addr=("127.0.0.53", 53))
        ready.set()
        while not stop.is_set():  # noqa: ASYNC110  # a threading.Event, set by the main thread
            await asyncio.sleep(0.1)
        transport.close()

    asyncio.run(main())


def nginx(action: str) -> None:
    conf = WORK / "nginx.conf"
    modules = "".join(f"load_module /usr/lib/nginx/modules/{m};\n" for m in LUA)
    listens = " ".join(f"listen 127.0.0.{a}:{PORT};" for a in range(1, ADDRESSES + 1))
    conf.write_text(modules + f"""
worker_processes 1;
daemon on;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{ {listens} root {WORK}/www;
           location / {{ access_by_lua_block {{ ngx.sleep({HTTP_DELAY_S}) }} }} }}
}}
""")
    if action == "start":
        subprocess.run(["nginx", "-c", str(conf)], check=True)
        time.sleep(0.3)
    elif (WORK / "nginx.pid").exists():
        subprocess.run(["nginx", "-c", str(conf), "-s", "stop"], check=False)


def lists() -> tuple[Path, list[str]]:
    (WORK / "www").mkdir(parents=True, exist_ok=True)
    for n in range(FILES_PER_HOST):
        (WORK / "www" / f"f{n}").write_bytes(os.urandom(4096))
    urls = [f"http://h{h:04d}.bench:{PORT}/f{n}" for h in range(HOSTS)
            for n in range(FILES_PER_HOST)]
    listed = WORK / "urls.txt"
    listed.write_text("".join(f"{u}\n" for u in urls))
    Path(f"{listed}.curl").write_text("".join(f'url = "{u}"\noutput = "{i}"\n'
                                              for i, u in enumerate(urls)))
    # aria2c puts every file in one folder: ten names for a thousand hosts, so each its own.
    Path(f"{listed}.aria2").write_text("".join(f"{u}\n  out={i}\n" for i, u in enumerate(urls)))
    return listed, urls


def commands(listed: Path, out: Path) -> dict[str, list[str]]:
    c = str(CONCURRENCY)
    return {
        "bulkfetch": [sys.executable, "-m", "bulkfetch", str(listed), "-o", str(out / "b"), "-q",
                      "--no-progress", "-c", c, "--per-host", "2"],
        "curl": ["curl", "--parallel", "--parallel-max", c, "--silent", "--create-dirs",
                 "--output-dir", str(out / "c"), "--config", f"{listed}.curl"],
        "wget2": ["wget2", f"--max-threads={c}", "--quiet", "--no-robots", "-P", str(out / "w"),
                  "-i", str(listed)],
        "aria2c": ["aria2c", "-j", c, "-x1", "-s1", "-q", "--file-allocation=none",
                   "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(out / "a"),
                   "-i", f"{listed}.aria2"],
    }


def in_namespace(command: list[str]) -> list[str]:
    """The command in a private mount namespace whose /etc/resolv.conf names our server."""
    resolv = WORK / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\noptions timeout:5 attempts:2\n")
    script = f'mount --bind {resolv} /etc/resolv.conf && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *command]


def once(command: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    began = time.monotonic()
    subprocess.run(in_namespace(command), check=True, stdout=subprocess.DEVNULL)
    took = time.monotonic() - began
    files = sum(1 for p in out.rglob("*") if p.is_file() and ".bulkfetch" not in p.parts)
    if files != HOSTS * FILES_PER_HOST:
        raise SystemExit(f"{command[0]}: {files} files, not {HOSTS * FILES_PER_HOST}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default="bulkfetch,curl,wget2,aria2c")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    listed, urls = lists()
    ready, stop = threading.Event(), threading.Event()
    dns = threading.Thread(target=serve_dns, args=(ready, stop), daemon=True)
    dns.start()
    ready.wait(5)
    nginx("start")
    times: dict[str, list[float]] = {}
    try:
        for round_ in range(args.rounds):
            tools = list(commands(listed, WORK / "out").items())
            tools = [t for t in tools if t[0] in args.tools.split(",")]
            shift = round_ % len(tools)
            for tool, command in tools[shift:] + tools[:shift]:
                times.setdefault(tool, []).append(once(command, WORK / "out"))
                print(tool, f"{times[tool][-1]:.2f} s", flush=True)
    finally:
        nginx("stop")
        stop.set()
        shutil.rmtree(WORK / "out", ignore_errors=True)
    ceiling = CONCURRENCY / HTTP_DELAY_S
    lines = [f"\n## names ({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{args.rounds} rounds): {HOSTS:,} hosts by name x {FILES_PER_HOST} files, DNS "
             f"answers held {DNS_DELAY_S * 1000:.0f} ms, HTTP {HTTP_DELAY_S * 1000:.0f} ms, "
             f"c={CONCURRENCY} (bulkfetch --per-host 2); ceiling {ceiling:,.0f} files/s\n",
             "| tool | median wall s | files/s | share of the ceiling |", "|---|---|---|---|"]
    for tool, ts in times.items():
        wall = statistics.median(ts)
        rate = len(urls) / wall
        lines.append(f"| {tool} | {wall:.2f} | {rate:,.0f} | {rate / ceiling:.0%} |")
    print("\n".join(lines))
    with (HERE / "RESULTS.md").open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
