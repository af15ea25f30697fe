"""The link transport wrapper: a network profile on every dialed connection, partitions and slow links.

``FaultyTransport(inner, model=...)`` is a :class:`~p2pnode.net.transport.Transport` that a node uses
in place of its own: a production node wraps its TCP transport in it when its config has a
``[network]`` profile (:func:`link_model`), the in-memory cluster wraps every node's in-memory
transport, and the test-only faults (``FaultControl``: partitions, the ``slow`` delay) drive the same
object. The node does not know it is there. It only sees byte streams, so it knows a stream's far end
by the address it dialed (``FaultyStream.remote``); accepted streams have no such address
(``remote == ""``).

Link model (``model`` set): the DIALING side applies the profile in both directions, so every byte of
a connection crosses exactly one model, whichever node dialed. Bytes handed to ``send_all`` at ``now``
are delivered to the inner stream at ``LinkState(link(own, remote)).due(now, n)``; bytes read from the
inner stream at ``arrival`` are held until ``LinkState(link(remote, own)).due(arrival, n)`` before
``receive_some`` returns them (a receive pump task reads the inner stream meanwhile). An accepted
stream is left alone (its dialer models it). A dialed address with no region in the model is not
modelled either (counted in :meth:`FaultyTransport.statistics` as ``unplaced``). The rules of one
direction (serialization, delay and jitter, loss, order) are :class:`p2pnode.net.linkmodel.LinkState`'s.
Each direction of each connection has its own ``random.Random``, seeded from the node's seed and name,
the remote address and the connection's serial number, so a run under the virtual clock repeats.

Partitions: ``block(addrs)`` replaces the set of blocked addresses. Dials to a blocked address fail
with ``OSError`` (as a refused connection would), and open streams to one are cut: their pending and
future operations raise ``trio.BrokenResourceError``. The rule that makes this enough (each side
blocks the other, and drops its connections to the other's node ids) is in
:mod:`p2pnode.testing.faults.control`.

Delay (the ``slow`` fault): ``set_delay(s)`` adds ``s`` seconds to every send from then on, on every
stream, on top of the profile's delay where there is one. Sends are pipelined as on a real link:
``send_all`` returns once the bytes are queued, later bytes never overtake earlier ones, and with no
delay, no model and nothing queued a send goes straight to the inner stream. The queue of each
direction of each stream is bounded (``max_buffer`` bytes): beyond it ``send_all`` waits for room, and
the receive pump stops reading the inner stream (so the sender's side fills, as a socket's would).

Clock: only ``trio.current_time`` and ``trio.sleep_until``, so the same wrapper runs in real time and
under Trio's virtual clock (``MockClock``).

Resource handling: the send and receive pumps of every stream run as tasks of ``serve``'s nursery, so
a stream can delay bytes only while ``serve`` runs (the node runs it first and for its whole life);
cancelling ``serve`` stops them. ``aclose`` of a stream first lets its queued bytes leave (the caller
bounds that wait, as ``FramedStream.aclose`` does), then closes the inner stream, which ends its
receive pump. Error handling: a failure of the inner stream surfaces as ``BrokenResourceError`` on the
stream's next operation (a received failure only after the bytes that arrived before it).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import trio

from p2pnode.config import NodeConfig, parse_peer_region
from p2pnode.errors import ConfigError
from p2pnode.net.linkmodel import Link, LinkState, NetworkProfile, load_profile
from p2pnode.net.transport import Handler, Transport

T = TypeVar("T")

MAX_BUFFER = 4 << 20  # bytes queued per stream and direction before the writer (or the pump) waits
RECEIVE_CHUNK = 64 << 10  # bytes the receive pump asks the inner stream for at a time


class LinkCut(trio.BrokenResourceError):
    """The stream's link was cut by a partition."""


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Where a node and the addresses it may dial sit in a network profile.

    ``regions`` maps a dialable ``"host:port"`` to the region of the node listening there; ``seed``
    (with ``name``) seeds the jitter and loss draws of every link."""

    profile: NetworkProfile
    region: str
    regions: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    seed: int = 0

    def links(self, remote: str) -> tuple[Link, Link] | None:
        """(to ``remote``, from ``remote``), or None when ``remote`` has no region."""
        theirs = self.regions.get(remote)
        if theirs is None:
            return None
        return self.profile.link(self.region, theirs), self.profile.link(theirs, self.region)

    def states(self, remote: str, serial: int) -> tuple[LinkState, LinkState] | None:
        """Fresh link states for connection number ``serial`` to ``remote`` (send, receive)."""
        pair = self.links(remote)
        if pair is None:
            return None
        out, back = pair
        tag = f"{self.seed}|{self.name}|{remote}|{serial}"
        return LinkState(out, random.Random(f"{tag}|send")), LinkState(back, random.Random(f"{tag}|recv"))


def parse_peer_regions(entries: Iterable[str], *, key: str = "network.peers") -> dict[str, str]:
    """``["HOST:PORT=REGION", ...]`` as a mapping; :class:`ConfigError` naming the entry otherwise."""
    return dict(parse_peer_region(entry, key=f"{key}[{i}]") for i, entry in enumerate(entries))


def link_model(cfg: NodeConfig) -> LinkModel | None:
    """The link model of ``cfg``'s ``[network]`` section; None when it names no profile (off).

    Error handling: :class:`ConfigError` naming the config file and the key (``network.profile``: a
    profile that does not load; ``network.region`` / ``network.peers[i]``: a region the profile does
    not have)."""
    net = cfg.network
    if net.profile is None:
        return None
    where = f"{cfg.source}: " if cfg.source is not None else ""
    try:
        profile = load_profile(net.profile)
    except ConfigError as exc:
        raise ConfigError(f"{where}network.profile: {exc}") from None
    known = ", ".join(profile.regions)
    if net.region not in profile.regions:
        raise ConfigError(f"{where}network.region: {net.region!r} is not a region of {net.profile} ({known})")
    regions = parse_peer_regions(net.peers)
    for i, (addr, region) in enumerate(regions.items()):
        if region not in profile.regions:
            raise ConfigError(f"{where}network.peers[{i}]: {addr} is in {region!r}, not one of {known}")
    return LinkModel(
        profile=profile,
        region=net.region,
        regions=regions,
        name=cfg.node.name or cfg.node.listen,
        seed=net.seed,
    )


class FaultyTransport:
    """See the module docstring."""

    def __init__(
        self, inner: Transport, *, model: LinkModel | None = None, max_buffer: int = MAX_BUFFER
    ) -> None:
        self.inner = inner
        self.model = model
        self.max_buffer = max_buffer
        self.blocked: frozenset[str] = frozenset()
        self.delay = 0.0
        self._streams: set[FaultyStream] = set()
        self._nursery: trio.Nursery | None = None
        self._serial = 0
        self._counts = {"dialed": 0, "accepted": 0, "modelled": 0, "unplaced": 0, "refused": 0}

    # == faults =====================================================================================
    def block(self, addrs: Iterable[str]) -> None:
        """Block exactly these ``"host:port"`` addresses (an empty set heals); cuts their open streams."""
        self.blocked = frozenset(addrs)
        for stream in list(self._streams):
            if stream.remote and stream.remote in self.blocked:
                stream.cut()

    def set_delay(self, seconds: float) -> None:
        """Delay every send from now on by ``seconds`` more (0 restores the link or its profile)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self.delay = seconds

    def delay_for(self, stream: FaultyStream) -> float:
        """The extra delay of a send on ``stream`` now, in seconds (added to the profile's)."""
        return self.delay

    def statistics(self) -> dict[str, int]:
        """Streams open now, and counts since start: dialed, accepted, modelled (dialed with a link
        model), unplaced (dialed, but the address has no region), refused (dials to blocked addresses)."""
        return {"open": len(self._streams), **self._counts}

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
            self._counts["accepted"] += 1
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
            self._counts["refused"] += 1
            raise OSError(f"connection refused: {addr} (link cut)")
        stream = await self.inner.connect(host, port)
        if addr in self.blocked:  # cut while connecting
            await trio.aclose_forcefully(stream)
            self._counts["refused"] += 1
            raise OSError(f"connection refused: {addr} (link cut)")
        self._counts["dialed"] += 1
        return self._adopt(stream, addr)

    def _adopt(self, stream: trio.abc.Stream, remote: str) -> FaultyStream:
        states = None
        if remote and self.model is not None:
            self._serial += 1
            states = self.model.states(remote, self._serial)
            self._counts["modelled" if states is not None else "unplaced"] += 1
        wrapped = FaultyStream(self, stream, remote, states)
        self._streams.add(wrapped)
        if states is not None:
            self._start_pump(wrapped._receive_pump)
        return wrapped

    def _start_pump(self, fn: Callable[[], Awaitable[None]]) -> None:
        if self._nursery is None:
            raise RuntimeError("FaultyTransport: delayed streams need serve() running")
        self._nursery.start_soon(fn)


class FaultyStream(trio.abc.Stream):
    """One stream of a :class:`FaultyTransport`. Not safe for concurrent senders or concurrent
    receivers (like its inner); one sender and one receiver may run at once."""

    def __init__(
        self,
        links: FaultyTransport,
        inner: trio.abc.Stream,
        remote: str,
        states: tuple[LinkState, LinkState] | None = None,
    ) -> None:
        self.links = links
        self.inner = inner
        self.remote = remote  # the dialed "host:port", or "" for an accepted stream
        self.send_link: LinkState | None = states[0] if states is not None else None
        self.receive_link: LinkState | None = states[1] if states is not None else None
        self._queue: deque[tuple[float, bytes]] = deque()  # (due, bytes), in send order
        self._queued = 0  # bytes in the queue or in flight
        self._last_due = float("-inf")
        self._pumping = False
        self._idle = trio.Event()  # set while nothing is queued or in flight
        self._idle.set()
        self._room = trio.Event()
        # Received, not yet due: (due, bytes) in arrival order; b"" is the end of the stream.
        self._held: deque[tuple[float, bytes]] = deque()
        self._held_bytes = 0
        self._arrived = trio.Event()
        self._held_room = trio.Event()
        self._receive_error: BaseException | None = None  # after the held bytes
        self._receive_error_due = float("inf")
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
        self._held.clear()
        self._held_bytes = 0
        self._held_room.set()

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
        """Run one inner operation (or wait) so that ``cut`` interrupts it."""
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                return await fn()
            finally:
                self._scopes.discard(scope)
        raise LinkCut("link cut")  # only reached when cut or aclose cancelled the operation

    # == sending ====================================================================================
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check()
        extra = self.links.delay_for(self)
        if self.send_link is None and extra <= 0 and not self._queue and not self._pumping:
            await self._io(partial(self.inner.send_all, data))
            return
        while self._queued >= self.links.max_buffer:
            self._room = trio.Event()
            await self._room.wait()
            self._check()
        chunk = bytes(data)
        now = trio.current_time()
        due = self.send_link.due(now, len(chunk)) if self.send_link is not None else now
        due = max(due + extra, self._last_due)
        self._last_due = due
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

    # == receiving ==================================================================================
    async def _receive_pump(self) -> None:
        """Read the inner stream as bytes arrive and hold each read until its due time (its end and
        its failure too, after what arrived before them). Stops at the end of the stream, a failure,
        a cut or ``aclose``."""
        link = self.receive_link
        assert link is not None
        try:
            while True:
                while self._held_bytes >= self.links.max_buffer and not self._cut:
                    self._held_room = trio.Event()
                    await self._held_room.wait()
                if self._cut or self._closed:
                    return
                data = bytes(await self._io(partial(self.inner.receive_some, RECEIVE_CHUNK)))
                self._held.append((link.due(trio.current_time(), len(data)), data))
                self._held_bytes += len(data)
                self._arrived.set()
                if not data:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if not self._cut and not self._closed:
                self._receive_error = exc
                self._receive_error_due = link.due(trio.current_time(), 0)
                self._arrived.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        self._check_receive()
        if self.receive_link is None:
            return await self._io(partial(self.inner.receive_some, max_bytes))
        limit = max_bytes if max_bytes is not None else RECEIVE_CHUNK
        while True:
            self._check_receive()
            if self._held:
                due = self._held[0][0]
                if due > trio.current_time():
                    await self._io(partial(trio.sleep_until, due))
                    continue
                return self._take(limit)
            if self._receive_error is not None:
                if self._receive_error_due > trio.current_time():
                    await self._io(partial(trio.sleep_until, self._receive_error_due))
                    continue
                error = self._receive_error
                raise trio.BrokenResourceError(f"receive failed: {error}") from error
            self._arrived = trio.Event()
            await self._io(self._arrived.wait)

    def _take(self, limit: int) -> bytes:
        """Up to ``limit`` held bytes that are due now, in order (the end of the stream stays held, so
        that every later ``receive_some`` returns ``b""`` too)."""
        now = trio.current_time()
        out: list[bytes] = []
        size = 0
        while self._held and self._held[0][0] <= now and size < limit:
            due, data = self._held[0]
            if not data:
                break
            take = data[: limit - size]
            if len(take) < len(data):
                self._held[0] = (due, data[len(take) :])
            else:
                self._held.popleft()
            out.append(take)
            size += len(take)
        self._held_bytes -= size
        self._held_room.set()
        return b"".join(out)

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
            self._held.clear()
            self._held_bytes = 0
            self._held_room.set()
            for scope in list(self._scopes):
                scope.cancel()
            await self.inner.aclose()


__all__ = [
    "FaultyTransport",
    "FaultyStream",
    "LinkCut",
    "LinkModel",
    "MAX_BUFFER",
    "link_model",
    "parse_peer_regions",
]
