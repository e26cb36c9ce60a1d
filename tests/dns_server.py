"""A small DNS server over UDP on 127.0.0.x, in a thread of its own: A answers for the names it
is given, NXDOMAIN or SERVFAIL for others on request, or silence; each answer after `delay_s`.

Only what a stub resolver asks is understood: one question, class IN. Enough for c-ares
(aiodns) pointed at it with --dns-servers.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
TYPE_A, TYPE_AAAA = 1, 28


@dataclass
class Zone:
    names: dict[str, str] = field(default_factory=dict)  # name -> IPv4 address
    servfail: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)  # never answered
    delay_s: float = 0.0
    asked: list[str] = field(default_factory=list)


class DnsServer:
    def __init__(self, zone: Zone, host: str = "127.0.0.53") -> None:
        self.zone = zone
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self.address = f"{host}:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = self._answer(query)
            if answer is not None:
                if self.zone.delay_s:
                    # One at a time is enough here: a test's resolver asks for a few names.
                    time.sleep(self.zone.delay_s)
                self._sock.sendto(answer, peer)

    def _answer(self, query: bytes) -> bytes | None:
        ident, _, qdcount = struct.unpack("!HHH", query[:6])
        name, end = _name(query, 12)
        qtype = struct.unpack("!H", query[end:end + 2])[0]
        question = query[12:end + 4]
        self.zone.asked.append(name)
        if name in self.zone.silent:
            return None
        address = self.zone.names.get(name)
        rcode = SERVFAIL if name in self.zone.servfail else (
            NOERROR if address is not None else NXDOMAIN)
        records = b""
        count = 0
        if address is not None and qtype == TYPE_A and rcode == NOERROR:
            records = (b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, 1, 60, 4)
                       + socket.inet_aton(address))
            count = 1
        flags = 0x8180 | rcode  # a response, recursion desired and available
        return struct.pack("!HHHHHH", ident, flags, qdcount, count, 0, 0) + question + records


def _name(packet: bytes, at: int) -> tuple[str, int]:
    labels = []
    while (size := packet[at]) != 0:
        labels.append(packet[at + 1:at + 1 + size].decode("ascii").lower())
        at += 1 + size
    return ".".join(labels), at + 1
