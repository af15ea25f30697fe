"""Link faults as a transport wrapper: partitions (refused dials, cut streams) and slow links.

``FaultyTransport(inner)`` is a :class:`~p2pnode.net.transport.Transport` that a node is given in
place of its own (``NodeHooks.wrap_transport``); the node does not know it is there. It only sees
byte streams, so it knows a stream's far end by the address it dialed (``FaultyStream.remote``);
accepted streams have no such address (``remote == ""``). The rule that makes this enough for
partitions (each side blocks the other) is in :mod:`p2pnode.testing.faults.control`.

Partitions: ``block(addrs)`` replaces the set of blocked addresses. Dials to a blocked address fail
with ``OSError`` (as a refused connection would), and open streams to one are cut: their pending and
future operations raise ``trio.BrokenResourceError``.

Delay: every send waits ``delay_for(stream)`` seconds, pipelined as on a real link: bytes handed to
``send_all`` at time t leave at t + delay, and later bytes never overtake earlier ones (a shorter
delay set meanwhile waits for what is already queued). ``send_all`` returns once the bytes are
queued, so a sender is never held for the delay itself; the queue of each stream is bounded
(``max_buffer`` bytes), beyond which ``send_all`` waits for room, as a socket's buffer would. With
no delay and nothing queued, a send goes straight to the inner stream.

Clock: only ``trio.current_time`` and ``trio.sleep_until``, so the same wrapper runs in real time
and under Trio's virtual clock (``MockClock``). A link model (per-link delays, jitter, bandwidth,
loss) is meant to subclass this class and override ``delay_for``.

Resource handling: the delayed sends of every stream run as tasks of ``serve``'s nursery, so a
stream can delay sends only while ``serve`` runs (the node runs it first and for its whole life);
cancelling ``serve`` stops them. ``aclose`` of a stream first lets its queued bytes leave (the
caller bounds that wait, as ``FramedStream.aclose`` does), then closes the inner stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import TypeVar

import trio

from p2pnode.net.transport import Handler, Transport

T = TypeVar("T")

MAX_BUFFER = 4 << 20  # bytes queued per stream before send_all waits


class LinkCut(trio.BrokenResourceError):
    """The stream's link was cut by a partition."""


class FaultyTransport:
    def __init__(self, inner: Transport, *, max_buffer: int = MAX_BUFFER) -> None:
        self.inner = inner
        self.max_buffer = max_buffer
        self.blocked: frozenset[str] = frozenset()
        self.delay = 0.0
        self._streams: set[FaultyStream] = set()
        self._nursery: trio.Nursery | None = None

    # == faults =====================================================================================
    def block(self, addrs: Iterable[str]) -> None:
        """Block exactly these ``"host:port"`` addresses (an empty set heals); cuts their open streams."""
        self.blocked = frozenset(addrs)
        for stream in list(self._streams):
            if stream.remote and stream.remote in self.blocked:
                stream.cut()

    def set_delay(self, seconds: float) -> None:
        """Delay every send from now on by ``seconds`` (0 restores the link)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self.delay = seconds

    def delay_for(self, stream: FaultyStream) -> float:
        """The delay of a send on ``stream`` now, in seconds. The override point of a link model."""
        return self.delay

    # == Transport ==================================================================================
    async def serve(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async def accepted(stream: trio.abc.Stream, addr: str) -> None:
            await handler(self._adopt(stream, ""), addr)

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                bound = await nursery.start(self.inner.serve, host, port, accepted)
                task_status.started(bound)
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        addr = f"{host}:{port}"
        if addr in self.blocked:
            raise OSError(f"connection refused: {addr} (link cut)")
        stream = await self.inner.connect(host, port)
        if addr in self.blocked:  # cut while connecting
            await trio.aclose_forcefully(stream)
            raise OSError(f"connection refused: {addr} (link cut)")
        return self._adopt(stream, addr)

    def _adopt(self, stream: trio.abc.Stream, remote: str) -> FaultyStream:
        wrapped = FaultyStream(self, stream, remote)
        self._streams.add(wrapped)
        return wrapped

    def _start_pump(self, fn: Callable[[], Awaitable[None]]) -> None:
        if self._nursery is None:
            raise RuntimeError("FaultyTransport: delayed sends need serve() running")
        self._nursery.start_soon(fn)


class FaultyStream(trio.abc.Stream):
    """One stream of a :class:`FaultyTransport`. Not safe for concurrent senders (like its inner)."""

    def __init__(self, links: FaultyTransport, inner: trio.abc.Stream, remote: str) -> None:
        self.links = links
        self.inner = inner
        self.remote = remote  # the dialed "host:port", or "" for an accepted stream
        self._queue: deque[tuple[float, bytes]] = deque()  # (due, bytes), in send order
        self._queued = 0  # bytes in the queue or in flight
        self._last_due = float("-inf")
        self._pumping = False
        self._idle = trio.Event()  # set while nothing is queued or in flight
        self._idle.set()
        self._room = trio.Event()
        self._scopes: set[trio.CancelScope] = set()
        self._cut = False
        self._closed = False
        self._error: BaseException | None = None

    def cut(self) -> None:
        """Break the link: pending and later operations raise ``LinkCut``; queued bytes are lost."""
        self._cut = True
        for scope in list(self._scopes):
            scope.cancel()
        self._drop_queue()

    def _drop_queue(self) -> None:
        self._queue.clear()
        self._queued = 0
        self._room.set()
        if not self._pumping:
            self._idle.set()

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._cut:
            raise LinkCut("link cut")
        if self._error is not None:
            raise trio.BrokenResourceError(f"send failed: {self._error}") from self._error

    async def _io(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one inner operation so that ``cut`` interrupts it."""
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                return await fn()
            finally:
                self._scopes.discard(scope)
        raise LinkCut("link cut")  # only reached when cut cancelled the operation

    # == trio.abc.Stream ============================================================================
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check()
        delay = self.links.delay_for(self)
        if delay <= 0 and not self._queue and not self._pumping:
            await self._io(partial(self.inner.send_all, data))
            return
        due = max(trio.current_time() + delay, self._last_due)
        self._last_due = due
        while self._queued >= self.links.max_buffer:
            self._room = trio.Event()
            await self._room.wait()
            self._check()
        chunk = bytes(data)
        self._queue.append((due, chunk))
        self._queued += len(chunk)
        if self._idle.is_set():
            self._idle = trio.Event()
        if not self._pumping:
            self._pumping = True
            self.links._start_pump(self._pump)
        await trio.lowlevel.checkpoint()

    async def _pump(self) -> None:
        """Deliver the queue in order, each chunk at its due time (those due together in one write)."""
        try:
            while self._queue:
                await trio.sleep_until(self._queue[0][0])
                now = trio.current_time()
                chunks = []
                while self._queue and self._queue[0][0] <= now:
                    chunks.append(self._queue.popleft()[1])
                data = b"".join(chunks)
                await self._io(partial(self.inner.send_all, data))
                self._queued -= len(data)
                self._room.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if not self._cut:
                self._error = exc
            self._queue.clear()
            self._queued = 0
            self._room.set()
        finally:
            self._pumping = False
            self._idle.set()

    async def wait_send_all_might_not_block(self) -> None:
        self._check()
        await self._io(self.inner.wait_send_all_might_not_block)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        self._check_receive()
        return await self._io(partial(self.inner.receive_some, max_bytes))

    def _check_receive(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._cut:
            raise LinkCut("link cut")

    async def aclose(self) -> None:
        """Let the queued bytes leave, then close; if cancelled meanwhile, close at once."""
        already = self._closed
        self._closed = True
        try:
            if not already and not self._cut:
                await self._idle.wait()
        finally:
            self.links._streams.discard(self)
            self._drop_queue()
            for scope in list(self._scopes):
                scope.cancel()
            await self.inner.aclose()


__all__ = ["FaultyTransport", "FaultyStream", "LinkCut", "MAX_BUFFER"]
