"""A TCP relay that holds every byte for DELAY_MS in each direction: a round trip of 2 x DELAY_MS.

    python bench/delay_proxy.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_MS

The bench runs it in a network namespace, between a veth and the server, because this
machine's kernel has no netem qdisc (`tc qdisc add ... netem` says "Specified qdisc kind is
unknown"). Connection setup pays one round trip too: the upstream connection is opened after
the delay. Bytes keep their order: each direction is one queue drained by one timer.
"""

from __future__ import annotations

import asyncio
import collections
import sys


class Lane:
    """One direction of one connection: bytes leave `delay` seconds after they arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.target: asyncio.Transport | None = None

    def push(self, data: bytes | None) -> None:  # None: the sender closed its side
        self.queue.append((self.loop.time() + self.delay, data))
        if self.timer is None and self.target is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self.drain)

    def attach(self, target: asyncio.Transport) -> None:
        """Bytes that waited for the connection leave one delay after it is made."""
        self.target = target
        earliest = self.loop.time() + self.delay
        self.queue = collections.deque((max(due, earliest), data) for due, data in self.queue)
        if self.queue and self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self.drain)

    def drain(self) -> None:
        self.timer = None
        now = self.loop.time()
        assert self.target is not None
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if data is None:
                if self.target.can_write_eof():
                    self.target.write_eof()
                else:
                    self.target.close()
                return
            self.target.write(data)
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self.drain)


class Side(asyncio.Protocol):
    def __init__(self, outbound: Lane, peer_closed: Lane) -> None:
        self.outbound = outbound  # what this side receives, on its way to the other side
        self.peer_closed = peer_closed
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.outbound.push(data)

    def eof_received(self) -> bool:
        self.outbound.push(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.outbound.push(None)


async def main(listen: str, port: int, up_host: str, up_port: int, delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    delay = delay_ms / 1000
    connecting: set[asyncio.Task[None]] = set()

    def accept() -> asyncio.Protocol:
        up, down = Lane(loop, delay), Lane(loop, delay)
        client = Side(up, down)

        async def connect_upstream() -> None:
            await asyncio.sleep(delay * 2)  # the handshake's round trip (SYN, SYN-ACK)
            transport, _ = await loop.create_connection(
                lambda: Side(down, up), up_host, up_port
            )
            up.attach(transport)  # type: ignore[arg-type]
            assert client.transport is not None
            down.attach(client.transport)

        task = loop.create_task(connect_upstream())
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return client

    server = await loop.create_server(accept, listen, port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, port_text, up_host, up_port_text, delay_text = sys.argv[1:6]
    try:
        import uvloop  # the relay must not be what limits the tools: uvloop when installed

        new_loop = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(main(host, int(port_text), up_host, int(up_port_text), float(delay_text)))
    except KeyboardInterrupt:
        pass
