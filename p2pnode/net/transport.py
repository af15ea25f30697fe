"""The transport interface, with a TCP implementation and an in-memory one for tests.

A transport gives byte streams: ``serve`` accepts them, ``connect`` opens them. Framing, handshakes
and everything above live elsewhere and work the same on both.

Link faults and network profiles are not here: they are one wrapper around either transport,
:class:`p2pnode.net.links.FaultyTransport`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio
import trio.testing

Handler = Callable[[trio.abc.Stream, str], Awaitable[None]]


class Transport(Protocol):
    async def serve(
        self, host: str, port: int, handler: Handler, *, task_status: trio.TaskStatus[int]
    ) -> None:
        """Accept connections until cancelled; reports the bound port through ``task_status``."""
        ...

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """Open a stream; raises OSError if nothing answers."""
        ...


class TcpTransport:
    async def serve(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)

        async def accept(stream: trio.SocketStream) -> None:
            try:
                peer_host, peer_port = stream.socket.getpeername()[:2]
                addr = f"{peer_host}:{peer_port}"
            except OSError:
                addr = "?"
            await handler(stream, addr)

        bound = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(bound)
            nursery.start_soon(trio.serve_listeners, accept, listeners)

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        return await trio.open_tcp_stream(host, port)


class MemoryNetwork:
    """A set of in-memory listeners keyed by "host:port", shared by the nodes of one test."""

    def __init__(self) -> None:
        self.listeners: dict[str, tuple[trio.Nursery, Handler]] = {}
        self._next_port = 10_000

    def transport(self, host: str) -> MemoryTransport:
        return MemoryTransport(self, host)


class MemoryTransport:
    def __init__(self, network: MemoryNetwork, host: str) -> None:
        self.network = network
        self.host = host

    async def serve(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if port == 0:
            port = self.network._next_port
            self.network._next_port += 1
        async with trio.open_nursery() as nursery:
            self.network.listeners[f"{self.host}:{port}"] = (nursery, handler)
            task_status.started(port)
            try:
                await trio.sleep_forever()
            finally:
                self.network.listeners.pop(f"{self.host}:{port}", None)

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        entry = self.network.listeners.get(f"{host}:{port}")
        if entry is None:
            raise OSError(f"connection refused: {host}:{port}")
        nursery, handler = entry
        ours, theirs = trio.testing.memory_stream_pair()
        nursery.start_soon(handler, theirs, f"{self.host}:0")
        await trio.lowlevel.checkpoint()
        return ours
