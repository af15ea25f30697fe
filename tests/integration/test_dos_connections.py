"""Strangers cannot exhaust a node: a peer that never reads, idle and half-sent client connections,
half-sent peer frames. Every case runs on the in-memory network under Trio's virtual clock; the
attacker does the real handshake with a fresh key, or speaks the plain client protocol."""

from __future__ import annotations

import struct
from collections.abc import MutableMapping, Sequence
from typing import Any

import structlog
import trio
import trio.testing

from p2pnode.crypto import NodeKey
from p2pnode.net.conn import FramedStream, handshake
from p2pnode.net.peers import short
from p2pnode.testing import MemoryCluster, open_memory_cluster
from p2pnode.wire import codec
from p2pnode.wire.messages import (
    ErrorReply,
    GetPeers,
    SettledReply,
    StatusReply,
    StatusRequest,
    WaitSettled,
    decode,
)
from p2pnode.wire.types import ChainId, Digest

VICTIM = 1


def events(
    logs: Sequence[MutableMapping[str, Any]], event: str, node: str = f"node-{VICTIM}"
) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event and e.get("node") == node]


class _Pipe:
    """One direction of a socket: a buffer of ``limit`` bytes; a writer waits while it is full."""

    def __init__(self, limit: int) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.closed = False
        self.lot = trio.lowlevel.ParkingLot()

    async def put(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            while len(self.buf) >= self.limit and not self.closed:
                await self.lot.park()
            if self.closed:
                raise trio.BrokenResourceError("closed")
            n = self.limit - len(self.buf)
            self.buf += view[:n]
            view = view[n:]
            self.lot.unpark_all()
        await trio.lowlevel.checkpoint()

    async def get(self, max_bytes: int | None) -> bytes:
        while not self.buf and not self.closed:
            await self.lot.park()
        n = len(self.buf) if max_bytes is None else max_bytes
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.lot.unpark_all()
        await trio.lowlevel.checkpoint()
        return out

    def close(self) -> None:
        self.closed = True
        self.lot.unpark_all()


class _End(trio.abc.Stream):
    def __init__(self, out: _Pipe, into: _Pipe) -> None:
        self.out, self.into = out, into

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.out.put(data)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.into.get(max_bytes)

    async def aclose(self) -> None:
        self.out.close()
        self.into.close()
        await trio.lowlevel.checkpoint()


def socket_pair(limit: int = 65536) -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """Two ends of a connection whose buffers hold ``limit`` bytes each way, as a socket's do: the
    writer blocks once the reader has stopped reading (the memory network's buffers never fill)."""
    a, b = _Pipe(limit), _Pipe(limit)
    return _End(a, b), _End(b, a)


async def attach(c: MemoryCluster, nursery: trio.Nursery, *, lockstep: bool) -> trio.abc.Stream:
    """A stream accepted by the victim's listener. ``lockstep``: with socket-like bounded buffers,
    so that the victim's writes block when this side stops reading."""
    if lockstep:
        ours, theirs = socket_pair()
    else:
        ours, theirs = trio.testing.memory_stream_pair()
    listener_nursery, handler = c.network.listeners[c.node(VICTIM).address]
    listener_nursery.start_soon(handler, theirs, "evil:1")
    return ours


async def request(stream: trio.abc.Stream, msg: Any) -> Any:
    await stream.send_all(codec.frame(msg.encode()))
    dec = codec.FrameDecoder()
    while True:
        data = await stream.receive_some(65536)
        assert data, "closed before a reply"
        frames = dec.feed(bytes(data))
        if frames:
            return decode(frames[0])


async def closed_by_node(stream: trio.abc.Stream) -> None:
    """Read (and drop) until the node closes the stream."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def test_a_peer_that_never_reads_is_disconnected_within_its_budget(
    autojump_clock: trio.abc.Clock,
) -> None:
    budget = 1 << 20
    peers = {"send_queue_bytes": budget, "send_queue": 1_000_000, "write_timeout_s": 2.0}
    # GetPeers floods are rate-limited and their answers bounded by the reply credit (docs/dos.md,
    # "Link requests"); lifted here, so that the flood still makes the victim queue replies.
    peers |= {"get_peers_rate": 10_000.0, "get_peers_burst": 100_000, "rate_limit_strikes": 1_000_000}
    config = {"peers": peers, "sync": {"reply_factor": 1000.0}}
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(validators=4, accounts=2, seed=1, bootstrap_all=False, config=config)
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=3)
            victim = c.driver(VICTIM)
            key = NodeKey.generate()
            stream = await attach(c, n, lockstep=True)
            conn = FramedStream(stream, 1 << 20)
            with trio.fail_after(5):
                await handshake(conn, key, ChainId(c.chain_id), 0, "full")
                while key.public not in victim.peers:  # it checks our HelloAuth after we checked its
                    await trio.sleep(0.01)
            start = trio.current_time()
            # Every GetPeers asks for a Peers reply: about 2 MB of replies for 15,000 requests of 5 bytes,
            # sent as fast as the victim reads them, while this side reads nothing.
            for _ in range(15):
                await stream.send_all(codec.frame(GetPeers().encode()) * 1000)
            # Connections take turns frame by frame: the victim may still be answering the last
            # requests when the sends return; its queue overflows (drops) once they are answered.
            with trio.fail_after(5):
                while (stats := victim.peers.statistics()[short(key.public)])["dropped"] == 0:
                    await trio.sleep(0.01)
            assert stats["queued_bytes"] <= budget
            most = 0
            with trio.fail_after(30):
                while key.public in victim.peers:
                    now = victim.peers.statistics().get(short(key.public), {})
                    most = max(most, now.get("queued_bytes", 0))
                    await trio.sleep(0.05)
            assert most <= budget
            assert trio.current_time() - start <= 2.0 + 0.5
            assert victim.counters["peers_slow"] == 1
            assert len(victim.peers) == 3  # its honest peers are untouched
            assert (await c.pay(0, 1, 5, via=VICTIM)).settled
            await c.wait_converged(applied=1)
            n.cancel_scope.cancel()
    slow = events(logs, "peer_slow")
    assert len(slow) == 1 and slow[0]["peer"] == short(key.public)
    assert slow[0]["queued_bytes"] <= budget and slow[0]["dropped"] > 0
    gone = [e for e in events(logs, "peer_disconnected") if e["peer"] == short(key.public)]
    assert gone and gone[0]["reason"].startswith("slow: ")


async def test_a_newcomer_takes_the_slot_of_the_client_idle_longest_and_busy_ones_keep_theirs(
    autojump_clock: trio.abc.Clock,
) -> None:
    limits = {"max_clients": 8, "client_idle_s": 30.0, "request_timeout_s": 20.0}
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(
            validators=4, accounts=2, seed=1, bootstrap_all=False, config={"limits": limits}
        )
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=3)
            victim = c.driver(VICTIM)
            idle = []
            for _ in range(8):  # each asks once, then holds its connection without a further request
                s = await attach(c, n, lockstep=False)
                assert isinstance(await request(s, StatusRequest(pad=bytes(4096))), StatusReply)
                idle.append(s)
                await trio.sleep(1)
            assert victim.peers.gate.clients == 8
            # 8 newcomers, each in a long wait (busy, not idle): each takes the slot of the client idle
            # longest, oldest first.
            busy: list[tuple[trio.abc.Stream, trio.Event]] = []

            async def wait_long(s: trio.abc.Stream, done: trio.Event) -> None:
                reply = await request(s, WaitSettled(digest=Digest(b"\x01" * 32), wait_ms=2**32 - 1))
                assert isinstance(reply, SettledReply) and not reply.settled
                done.set()

            for i in range(8):
                s, done = await attach(c, n, lockstep=False), trio.Event()
                n.start_soon(wait_long, s, done)
                with trio.fail_after(1):
                    await closed_by_node(idle[i])
                busy.append((s, done))
            assert victim.peers.gate.clients == 8
            assert victim.counters["clients_evicted"] == 8
            # Every slot is in a request now: a newcomer is refused, nobody's wait is cut.
            s = await attach(c, n, lockstep=False)
            reply = await request(s, StatusRequest(pad=bytes(4096)))
            assert isinstance(reply, ErrorReply) and "too many client connections" in reply.reason
            await closed_by_node(s)
            assert victim.counters["connections_refused"] == 1
            # The node's own work goes on: its peers settle a payment made elsewhere and it applies it.
            assert (await c.pay(0, 1, 5, via=0)).settled
            with trio.fail_after(10):
                while victim.core.ledger.applied_count() != 1:
                    await trio.sleep(0.05)
            # The waits end at the cap (request_timeout_s), not at wait_ms; then an honest client is
            # answered (it evicts one of them, idle again).
            with trio.fail_after(25):
                for _, done in busy:
                    await done.wait()
            assert (await c.balance(1, via=VICTIM)) > 0
            n.cancel_scope.cancel()
    closed = events(logs, "client_closed")
    evicted = [e for e in closed if e["reason"].startswith("evicted: client slots full (8), idle for ")]
    assert len(evicted) >= 9
    refusals = events(logs, "connection_refused")
    assert len(refusals) == 1 and refusals[0]["kind"] == "client"
    capped = events(logs, "request_capped")
    assert capped and "capped at limits.request_timeout_s (20s)" in capped[0]["reason"]
    assert victim.counters["requests_capped"] == 8


async def test_a_first_frame_beyond_client_max_frame_is_refused() -> None:
    """Until a handshake proves a peer, a frame may be at most limits.client_max_frame (64 KiB): a
    stranger cannot make the node hold a 1 MiB buffer by announcing one."""
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(validators=4, accounts=2, seed=1, bootstrap_all=False)
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=3)
            s = await attach(c, n, lockstep=False)
            await s.send_all(struct.pack(">I", (1 << 16) + 1) + b"\x00" * 100)
            with trio.fail_after(5):
                await closed_by_node(s)
            n.cancel_scope.cancel()
    rejected = events(logs, "message_rejected")
    assert rejected and "65536" in rejected[0]["reason"]


async def test_a_half_sent_client_frame_is_cut_after_frame_timeout(autojump_clock: trio.abc.Clock) -> None:
    limits = {"frame_timeout_s": 3.0, "client_idle_s": 600.0}
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(
            validators=4, accounts=2, seed=1, bootstrap_all=False, config={"limits": limits}
        )
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=3)
            streams = []
            for _ in range(20):  # slowloris: one honest request, then half of a 60 KB frame
                s = await attach(c, n, lockstep=False)
                assert isinstance(await request(s, StatusRequest(pad=bytes(4096))), StatusReply)
                await s.send_all(struct.pack(">I", 60_000) + b"\x00" * 30_000)
                streams.append(s)
            started = trio.current_time()
            with trio.fail_after(10):
                for s in streams:
                    await closed_by_node(s)
            assert 3.0 <= trio.current_time() - started <= 3.5
            assert c.driver(VICTIM).peers.gate.clients == 0
            assert (await c.balance(1, via=VICTIM)) > 0
            n.cancel_scope.cancel()
    closed = events(logs, "client_closed")
    assert len(closed) == 20 and all("frame not completed within 3s" in e["reason"] for e in closed)


async def test_a_half_sent_peer_frame_is_cut_after_frame_timeout(autojump_clock: trio.abc.Clock) -> None:
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(
            validators=4, accounts=2, seed=1, bootstrap_all=False, config={"limits": {"frame_timeout_s": 3.0}}
        )
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=3)
            key = NodeKey.generate()
            stream = await attach(c, n, lockstep=False)
            conn = FramedStream(stream, 1 << 20)
            with trio.fail_after(5):
                await handshake(conn, key, ChainId(c.chain_id), 0, "full")
            await stream.send_all(struct.pack(">I", 50_000) + b"\x00" * 10)
            started = trio.current_time()
            with trio.fail_after(10):  # below peers.idle_timeout_s (20 s): the frame timeout cuts it
                await closed_by_node(stream)
            assert 3.0 <= trio.current_time() - started <= 3.5
            assert len(c.driver(VICTIM).peers) == 3
            n.cancel_scope.cancel()
    gone = [e for e in events(logs, "peer_disconnected") if e["peer"] == short(key.public)]
    assert gone and "frame not completed within 3s" in gone[0]["reason"]


async def test_a_status_reply_is_at_most_twice_its_request() -> None:
    """Anti-amplification: an unpadded StatusRequest (8 bytes) is answered with a short ErrorReply
    naming the size it needs; padded to it, with the status. Never more than 2 bytes per byte in."""
    cluster = open_memory_cluster(validators=4, accounts=2, seed=1, bootstrap_all=False)
    async with cluster as c, trio.open_nursery() as n:
        await c.wait_ready(peers=3)
        s = await attach(c, n, lockstep=False)
        small = StatusRequest()
        reply = await request(s, small)
        assert isinstance(reply, ErrorReply) and reply.reason.startswith("pad ")
        assert len(codec.frame(reply.encode())) <= 2 * len(codec.frame(small.encode()))
        need = int(reply.reason.split()[1])
        padded = StatusRequest(pad=bytes(need - len(codec.frame(small.encode())) + 16))
        assert len(codec.frame(padded.encode())) >= need
        status = await request(s, padded)
        assert isinstance(status, StatusReply)
        assert len(codec.frame(status.encode())) <= 2 * len(codec.frame(padded.encode()))
        async with c.client(VICTIM) as client:  # the library pads by itself
            assert (await client.status()).applied == 0
        n.cancel_scope.cancel()


async def test_finished_waits_leave_nothing_behind(autojump_clock: trio.abc.Clock) -> None:
    """Each WaitSettled's state is freed when the request ends (before: ~415 bytes per request leaked,
    the per-digest event was never removed)."""
    cluster = open_memory_cluster(validators=4, accounts=2, seed=1, bootstrap_all=False)
    async with cluster as c, trio.open_nursery() as n:
        await c.wait_ready(peers=3)
        victim = c.driver(VICTIM)
        s = await attach(c, n, lockstep=False)
        for i in range(2000):
            reply = await request(s, WaitSettled(digest=Digest(i.to_bytes(32, "big")), wait_ms=1))
            assert isinstance(reply, SettledReply) and not reply.settled
        assert victim.clients._settled == {} and victim.clients._outcomes == {}
        n.cancel_scope.cancel()
