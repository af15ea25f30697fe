"""Peer connections: the registry of connected peers, their reader, writer and keepalive tasks, bans,
the address book and the peer list this node tells others.

One connection per peer. Each runs three tasks in its own nursery: the reader hands every protocol
message to the core (through ``perform``) and answers the link-level ones (Ping, GetPeers, Peers)
itself; the writer drains the peer's bounded send queue, coalescing what is queued into one write and
the small messages among it into ``Bundle`` frames (several messages per frame: one frame header, one
read and one decode of the frame for all of them; the reader takes each as if it had come alone);
the keepalive pings and closes a connection that has received nothing for ``peers.idle_timeout_s``.

Bounded in bytes: a peer's queue holds at most ``peers.send_queue_bytes`` (the write in flight
included) and ``peers.send_queue`` frames. Sending never waits: a message that does not fit is dropped
and counted (``send_dropped``). A peer that cannot keep up is disconnected as slow (``peer_slow``):
when one write to it makes no progress for ``peers.write_timeout_s``, or its queue stays above half
of its byte budget for that long. So a peer that never reads costs this node at most its budget, for
at most about ``write_timeout_s``, whatever is sent to it.

Accepting (``on_incoming``) goes through the node's :class:`~p2pnode.net.limits.ConnectionGate`: a
connection beyond the open-file budget is closed at once, a client beyond ``limits.max_clients`` gets
an ``ErrorReply`` and is closed. Every connection's frames must complete within
``limits.frame_timeout_s`` of their first byte.

Peer slots (docs/dos.md, "Peer slots"): inbound peers have ``peers.max_inbound`` slots, apart from the
``peers.max_outbound`` the dialer fills; an inbound peer never takes an outbound slot. When the inbound
slots are full, :func:`admit_inbound` decides: a committee member always gets in, evicting the least
useful non-committee inbound peer; anyone else gets in only by evicting an inbound peer that delivered
nothing useful and is not one of the ``PROTECT_OLDEST`` longest connected, else it gets addresses and a
Refuse. *Useful* (``PeerConn.useful``) counts the gossip payloads this peer delivered first that the
core then validated (it relays only those: they enter the gossip cache), and the certificates of its
sync batches that the core applied.

Link requests (docs/dos.md, "Link requests"), answered here, are limited per peer as Ethereum
consensus clients limit their req/resp protocols: Ping at ``peers.ping_rate`` per second, GetPeers
(and Peers lists taken in) at ``peers.get_peers_rate``, each with a reserve. A request beyond its
limit is not answered and is counted (``link_rate_limited``); a peer over the limit more than
``peers.rate_limit_strikes`` times (one strike regained per second) is penalized (``peer_penalized``,
reason ``rate limited: ...``). Answers are also taken from the peer's reply credit in the core
(``NodeCore.spend``): a peer outside the committee gets at most ``sync.reply_factor`` bytes back per
byte it sent, so a Peers list is trimmed to what it paid for.

Resource handling: ``run`` returns when the connection ends, and has closed it; the core is told the
peer left before ``run`` returns (shielded), and only by the connection that is registered, so a
replaced duplicate never removes the peer that replaced it. Error handling: a peer's bad input ends
that connection (or bans the peer, for a ``Disconnect`` effect), never the node.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from p2pnode.config import NodeConfig, parse_hostport
from p2pnode.core.budget import Budgets, TokenBucket
from p2pnode.core.effects import Effect, PersistApplied
from p2pnode.core.node import NodeCore
from p2pnode.core.payments import message_id
from p2pnode.core.settlement import FRAME_HEADER, wire_size
from p2pnode.crypto import NodeKey
from p2pnode.errors import DecodeError
from p2pnode.net.conn import PEER_ERRORS, FramedStream, PeerHello, handshake
from p2pnode.net.limits import ConnectionGate, connection_caps
from p2pnode.net.metrics import NodeMetrics
from p2pnode.wire.codec import frame
from p2pnode.wire.messages import (
    Bundle,
    CertBatch,
    ErrorReply,
    GetPeers,
    Gossip,
    Hello,
    Message,
    Peers,
    Ping,
    Pong,
    Refuse,
    decode,
)
from p2pnode.wire.types import ChainId, MsgId, NodeId

Perform = Callable[[list[Effect]], Awaitable[None]]
ServeClient = Callable[[FramedStream, Message], Awaitable[None]]

PEER_LIST_MAX = 64  # addresses per Peers message; a full list may be truncated
COALESCE_BYTES = 256 * 1024  # one write carries at most about this much queued data
BUNDLE_BYTES = 64 * 1024  # a Bundle frame carries at most about this much; larger messages go alone
BUNDLE_ITEMS = 256  # messages in one Bundle frame (the wire allows 1024)
REFUSAL_LOG_S = 1.0  # at most one connection_refused line per this many seconds (a flood logs its count)
PROTECT_OLDEST = 4  # the inbound peers connected longest are never evicted for a non-committee newcomer
FIRST_PENDING = 4096  # first deliveries waiting for the core's verdict (oldest dropped beyond it)
FIRST_PENDING_S = 30.0  # a first delivery not validated within this long is not counted
TALLY_S = 0.5  # how often first deliveries are checked against the gossip cache (kept MCACHE_TTL s)


def short(node_id: bytes) -> str:
    return node_id.hex()[:16]


@dataclass(eq=False)
class PeerConn:
    node_id: NodeId
    conn: FramedStream
    direction: str  # "in" | "out"
    addr: str  # dialable "host:port", or "" if the peer does not listen
    role: str
    send: trio.MemorySendChannel[bytes]
    recv: trio.MemoryReceiveChannel[bytes]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    last_rx: float = 0.0
    dropped: int = 0
    queued_bytes: int = 0  # bytes of messages queued or in the write in flight
    over_since: float | None = None  # when queued_bytes last rose above the high-water mark
    close_reason: str = ""  # why this node closed it, when it did (the peer_disconnected reason)
    since: float = 0.0  # when it connected
    useful: int = 0  # validated payloads it delivered first (see the module docstring)
    rx: TokenBucket | None = None  # inbound bytes while it has delivered nothing useful (strangers)
    rx_counted: int = 0  # conn.bytes_in already charged to ``rx``


@dataclass(eq=False, slots=True)
class _ClientSlot:
    """A client connection's slot: cancelled to evict it, its slot then handed over to a newcomer."""

    scope: trio.CancelScope
    handed_over: bool = False


@dataclass(frozen=True, slots=True)
class SlotHolder:
    """What the inbound-slot decision knows of a connected inbound peer."""

    node_id: bytes
    useful: int
    since: float
    committee: bool


def admit_inbound(
    inbound: Sequence[SlotHolder], *, cap: int, committee: bool, protect_oldest: int = PROTECT_OLDEST
) -> tuple[bool, bytes | None]:
    """May a new inbound peer (a committee member if ``committee``) have a slot, and whom does it evict?

    Returns ``(admit, evict)``. Below ``cap``: admitted, nobody evicted. Full:

    - a committee member is admitted and evicts the non-committee inbound peer with the fewest useful
      deliveries (the youngest among equals); with no such peer it is admitted beyond ``cap`` (the
      committee is bounded by the genesis);
    - anyone else may evict only a non-committee inbound peer with no useful delivery that is not one
      of the ``protect_oldest`` inbound peers connected longest: the youngest such peer. With none, the
      newcomer is refused.
    """
    if len(inbound) < cap:
        return True, None
    others = [h for h in inbound if not h.committee]
    if committee:
        if not others:
            return True, None
        victim = min(others, key=lambda h: (h.useful, -h.since))
        return True, victim.node_id
    oldest = {h.node_id for h in sorted(inbound, key=lambda h: h.since)[:protect_oldest]}
    candidates = [h for h in others if h.useful == 0 and h.node_id not in oldest]
    if not candidates:
        return False, None
    return True, max(candidates, key=lambda h: h.since).node_id


class AddressBook:
    """Dialable addresses this node knows, ``"host:port" -> node id`` once known.

    Bounded: peer exchange adds at most ``4 * peers.max_connections`` addresses; configured bootstrap
    addresses are always kept.
    """

    def __init__(self, cfg: NodeConfig, node_id: NodeId, core: NodeCore) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.core = core
        self.known: dict[str, NodeId | None] = {}
        for b in cfg.node.bootstrap:
            self.known.setdefault(b, None)

    def note(self, addr: str, nid: NodeId) -> None:
        """``nid`` answered at ``addr``."""
        self.known[addr] = nid

    def addresses_of(self, nid: bytes) -> set[str]:
        return {a for a, n in self.known.items() if n == nid}

    def learn(self, msg: Peers, source: NodeId) -> None:
        """A peer told us its peers: remember their addresses (bounded), and tell the core who its
        neighbours are (gossip skips pushes that would duplicate)."""
        if len(msg.peers) < PEER_LIST_MAX:
            self.core.on_peer_neighbors(source, (nid for _, _, nid in msg.peers))
        for host, port, nid in msg.peers:
            if nid == self.node_id or port == 0:
                continue
            addr = f"{host}:{port}"
            if addr not in self.known and len(self.known) < 4 * self.cfg.peers.max_connections:
                self.known[addr] = NodeId(nid)


class PeerSet:
    """The connected peers. Iterating or ``len`` gives their node ids; ``send`` queues a message."""

    def __init__(
        self,
        *,
        cfg: NodeConfig,
        key: NodeKey,
        chain_id: ChainId,
        role: str,
        core: NodeCore,
        book: AddressBook,
        log: Any,
        counters: dict[str, int],
        perform: Perform,
        serve_client: ServeClient,
    ) -> None:
        self.cfg = cfg
        self.key = key
        self.node_id = NodeId(key.public)
        self.chain_id = chain_id
        self.role = role
        self.core = core
        self.book = book
        self.log = log
        self.counters = counters
        self.perform = perform
        self.serve_client = serve_client
        self.listen_port = 0  # told to peers in the handshake; set once the node listens
        self._client_slots: dict[FramedStream, _ClientSlot] = {}
        self._new_peers: TokenBucket | None = None  # inbound handshakes of unknown peers per second
        self.banned: dict[bytes, float] = {}  # peers disconnected for misbehaving -> refused until
        self._conns: dict[NodeId, PeerConn] = {}
        # The node replaces this at start with caps that fit the open-file limit (p2pnode.net.limits).
        self.gate = ConnectionGate(
            connection_caps(
                soft_limit=-1,
                fd_reserve=cfg.limits.fd_reserve,
                max_peers=cfg.peers.max_connections,
                max_clients=cfg.limits.max_clients,
            )
        )
        self._refused_logged_at = float("-inf")
        self._refused_unlogged = 0
        # Gossip payloads first delivered by a peer, waiting for the core's verdict: id -> (peer, when).
        self._first: OrderedDict[MsgId, tuple[NodeId, float]] = OrderedDict()
        p = cfg.peers
        self.link_limits: dict[str, Budgets[NodeId]] = {
            "Ping": Budgets(rate=p.ping_rate, burst=float(p.ping_burst)),
            "GetPeers": Budgets(rate=p.get_peers_rate, burst=float(p.get_peers_burst)),
            "Peers": Budgets(rate=p.get_peers_rate, burst=float(p.get_peers_burst)),
        }
        self.link_strikes: Budgets[NodeId] = Budgets(rate=1.0, burst=float(p.rate_limit_strikes))
        for name in ("link_rate_limited", "link_credit_trimmed"):
            counters.setdefault(name, 0)
        self.metrics: NodeMetrics | None = None  # the node sets it when [metrics] is on

    # == the registry ===============================================================================
    def __len__(self) -> int:
        return len(self._conns)

    def __contains__(self, nid: object) -> bool:
        return nid in self._conns

    def __iter__(self) -> Iterator[NodeId]:
        return iter(list(self._conns))

    def ids(self) -> list[NodeId]:
        return list(self._conns)

    def get(self, nid: bytes) -> PeerConn | None:
        return self._conns.get(NodeId(nid))

    def values(self) -> list[PeerConn]:
        return list(self._conns.values())

    def send(self, nid: bytes, msg: Message) -> None:
        """Queue ``msg`` for ``nid`` without waiting; dropped (and counted) if it does not fit in the
        peer's byte budget (``peers.send_queue_bytes``) or frame cap (``peers.send_queue``)."""
        peer = self._conns.get(NodeId(nid))
        if peer is None:
            return
        data = msg.encode()
        budget = self.cfg.peers.send_queue_bytes
        if peer.queued_bytes + len(data) > budget:
            self._dropped(peer)
            return
        try:
            peer.send.send_nowait(data)
        except trio.WouldBlock:
            self._dropped(peer)
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return  # the peer is being torn down
        peer.queued_bytes += len(data)
        if self.metrics is not None:
            self.metrics.sent(msg, len(data) + FRAME_HEADER)
        if peer.over_since is None and peer.queued_bytes > budget // 2:
            peer.over_since = trio.current_time()

    def _dropped(self, peer: PeerConn) -> None:
        peer.dropped += 1
        self.counters["send_dropped"] += 1
        if peer.over_since is None and peer.queued_bytes > self.cfg.peers.send_queue_bytes // 2:
            peer.over_since = trio.current_time()

    def statistics(self) -> dict[str, dict[str, int]]:
        """Per peer (hex16): bytes queued (in flight included), frames queued, messages dropped."""
        return {
            short(p.node_id): {
                "queued_bytes": p.queued_bytes,
                "queued_frames": p.recv.statistics().current_buffer_used,
                "dropped": p.dropped,
            }
            for p in self._conns.values()
        }

    def disconnect(self, nid: bytes) -> bool:
        """Close the connection to ``nid`` (it may dial again); False if not connected."""
        peer = self._conns.get(NodeId(nid))
        if peer is None:
            return False
        peer.scope.cancel()
        return True

    def penalize(self, nid: bytes, reason: str) -> None:
        """Disconnect ``nid`` and refuse it for ``peers.ban_s``."""
        ban_s = self.cfg.peers.ban_s
        self.banned[nid] = trio.current_time() + ban_s
        if self.disconnect(nid):
            self.log.warning("peer_penalized", peer=short(nid), reason=reason, ban_s=ban_s)

    def is_banned(self, nid: bytes) -> bool:
        until = self.banned.get(nid)
        if until is None:
            return False
        if until <= trio.current_time():
            del self.banned[nid]
            return False
        return True

    def peer_list(self, exclude: NodeId) -> tuple[tuple[str, int, bytes], ...]:
        out = []
        for p in self._conns.values():
            if p.node_id != exclude and p.addr:
                host, port = parse_hostport(p.addr)
                out.append((host, port, bytes(p.node_id)))
        return tuple(out[:PEER_LIST_MAX])

    # == slots =======================================================================================
    def is_committee(self, nid: bytes) -> bool:
        return nid in self.core.committee

    def inbound_cap(self) -> int:
        """Inbound slots: ``peers.max_inbound``, less if the open-file budget lowered the total."""
        p = self.cfg.peers
        return max(1, min(p.max_inbound, self.gate.caps.max_peers - p.max_outbound))

    def count(self, direction: str) -> int:
        """Connections of this direction (``"in"`` / ``"out"``), not counting those being closed."""
        return sum(1 for p in self._conns.values() if p.direction == direction and not p.close_reason)

    def _note_first(self, mid: MsgId, peer: NodeId) -> None:
        self._first[mid] = (peer, trio.current_time())
        while len(self._first) > FIRST_PENDING:
            self._first.popitem(last=False)

    def tally(self) -> None:
        """Credit each first delivery the core has validated since (it is in the gossip cache) to the
        peer that delivered it; forget those still unvalidated after ``FIRST_PENDING_S``."""
        router = self.core.router
        horizon = trio.current_time() - FIRST_PENDING_S
        for mid, (nid, at) in list(self._first.items()):
            if router.cached(mid):
                del self._first[mid]
                peer = self._conns.get(nid)
                if peer is not None:
                    peer.useful += 1
            elif at < horizon:
                del self._first[mid]

    async def tally_loop(self) -> None:
        """Service: :meth:`tally` every ``TALLY_S`` (the gossip cache keeps a payload a few seconds)."""
        while True:
            await trio.sleep(TALLY_S)
            self.tally()

    def _admit(self, nid: NodeId) -> bool:
        """Find an inbound slot for a handshaken newcomer, evicting a peer if need be (see
        :func:`admit_inbound`). False: refuse it."""
        if nid in self._conns or self.is_banned(nid):
            return True  # a duplicate replaces its own slot; a banned peer is refused in ``_run``
        self.tally()
        holders = [
            SlotHolder(p.node_id, p.useful, p.since, self.is_committee(p.node_id))
            for p in self._conns.values()
            if p.direction == "in" and not p.close_reason
        ]
        committee = self.is_committee(nid)
        admit, evict = admit_inbound(holders, cap=self.inbound_cap(), committee=committee)
        if evict is not None:
            victim = self._conns[NodeId(evict)]
            why = "a committee member needed the slot" if committee else "inbound slots full"
            victim.close_reason = f"evicted: {why} (useful {victim.useful})"
            self.counters["peers_evicted"] += 1
            self.log.info(
                "peer_evicted",
                peer=short(evict),
                useful=victim.useful,
                age_s=round(trio.current_time() - victim.since, 3),
                newcomer=short(nid),
                committee=committee,
            )
            victim.scope.cancel()
        return admit

    # == connections ================================================================================
    async def handshake(self, conn: FramedStream, first: Hello | None = None) -> PeerHello:
        return await handshake(conn, self.key, self.chain_id, self.listen_port, self.role, first=first)

    def _handshake_allowed(self, claimed: bytes) -> bool:
        """New inbound handshakes are taken at most ``peers.handshake_rate`` per second
        (``handshake_burst`` in reserve), except from committee members and peers this node knows an
        address of: forty fresh keys dialling at once are spread out instead of stalling the node.
        The claim is checked by the handshake right after; a false one only skips this limit."""
        if self.is_committee(claimed) or self.book.addresses_of(claimed):
            return True
        now = trio.current_time()
        if self._new_peers is None:
            cfg = self.cfg.peers
            self._new_peers = TokenBucket(float(cfg.handshake_rate), float(cfg.handshake_burst))
        return self._new_peers.take(now, 1) == 1

    def _refused(self, addr: str, kind: str, reason: str) -> None:
        """Count a refused connection; log it, at most once per ``REFUSAL_LOG_S`` (a flood of
        connections must not become a flood of log lines), with how many went unlogged before it."""
        self.counters["connections_refused"] += 1
        now = trio.current_time()
        if now - self._refused_logged_at < REFUSAL_LOG_S:
            self._refused_unlogged += 1
            return
        self.log.warning(
            "connection_refused", addr=addr, kind=kind, reason=reason, unlogged=self._refused_unlogged
        )
        self._refused_logged_at = now
        self._refused_unlogged = 0

    async def on_incoming(self, stream: trio.abc.Stream, addr: str) -> None:
        """A stream accepted on the node port: a peer (first frame ``Hello``) or a client.

        Closed at once, without reading, while the open connections are at the gate's ``max_open``
        (the open-file limit less ``limits.fd_reserve``)."""
        if not self.gate.try_open():
            self._refused(addr, "connection", f"open connections at the limit ({self.gate.caps.max_open})")
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()
            return
        try:
            await self._incoming(stream, addr)
        finally:
            self.gate.close()

    async def _incoming(self, stream: trio.abc.Stream, addr: str) -> None:
        limits = self.cfg.limits
        # Until the handshake proves a peer, frames are capped at client_max_frame: a stranger's
        # half-sent first frame holds at most that much.
        conn = FramedStream(stream, limits.client_max_frame, frame_timeout=limits.frame_timeout_s)
        try:
            with trio.fail_after(self.cfg.peers.handshake_timeout_s):
                first = await conn.receive()
            if not isinstance(first, Hello):
                await self._client(conn, addr, first)
                return
            if not self._handshake_allowed(first.node_id):
                # A storm of new keys: refused before any signature work; they may dial again later.
                await refuse_quietly(conn, "busy: too many new peers at once, try again later")
                self._refused(addr, "peer", f"new peers beyond {self.cfg.peers.handshake_rate:g}/s")
                await conn.aclose()
                return
            conn.limit(limits.max_frame)
            with trio.fail_after(self.cfg.peers.handshake_timeout_s):
                hello = await self.handshake(conn, first)
                if not self._admit(hello.node_id):
                    # Full of peers it may not evict: hand the newcomer other addresses before
                    # refusing, so that it can fill up elsewhere.
                    await conn.send(Peers(peers=self.peer_list(exclude=hello.node_id)))
                    await conn.send(Refuse(reason="too many connections"))
                    # Rate-limited: fresh-key peers reconnecting in a loop must not flood the log.
                    cap = self.inbound_cap()
                    self._refused(addr, "peer", f"inbound slots full ({cap}), none may be evicted")
                    await conn.aclose()
                    return
        except trio.TooSlowError:
            self.counters["handshakes_refused"] += 1
            self.log.warning(
                "handshake_refused", addr=addr, reason="timeout: peer did not complete the handshake"
            )
            await conn.aclose()
            return
        except DecodeError as exc:
            self.counters["frames_rejected"] += 1
            self.log.warning("message_rejected", kind="frame", reason=str(exc), peer=addr)
            await refuse_quietly(conn, f"malformed frame: {exc}")
            await conn.aclose()
            return
        except PEER_ERRORS as exc:
            self.counters["handshakes_refused"] += 1
            self.log.warning("handshake_refused", addr=addr, reason=str(exc) or type(exc).__name__)
            await conn.aclose()
            return
        host = addr.rpartition(":")[0]
        dial_addr = f"{host}:{hello.listen_port}" if hello.listen_port else ""
        await self.run(conn, hello, "in", dial_addr)

    async def _client(self, conn: FramedStream, addr: str, first: Message) -> None:
        """Serve a client connection. Beyond ``limits.max_clients``, the client connection idle
        longest between requests is closed and the newcomer takes its slot (an idle connection has
        nothing in progress: closing it loses nothing); with none idle, the newcomer is refused."""
        slot = _ClientSlot(trio.CancelScope())
        if not self.gate.try_client() and not self._evict_idle_client():
            cap = self.gate.caps.max_clients
            self._refused(addr, "client", f"too many client connections ({cap})")
            with trio.move_on_after(1):
                try:
                    reason = f"too many client connections ({cap}); try again later"
                    await conn.send(ErrorReply(reason=reason))
                except PEER_ERRORS:
                    pass  # it is gone already; the refusal is counted and logged on our side
            await conn.aclose()
            return
        self.counters["clients"] += 1
        self._client_slots[conn] = slot
        try:
            with slot.scope:
                await self.serve_client(conn, first)
        finally:
            del self._client_slots[conn]
            if not slot.handed_over:
                self.gate.client_done()

    def _evict_idle_client(self) -> bool:
        """Close the client connection idle longest, handing its slot over; False if none is idle."""
        idle = [
            (c.idle_since, c)
            for c, s in self._client_slots.items()
            if c.idle_since is not None and not s.handed_over
        ]
        if not idle:
            return False
        since, conn = min(idle, key=lambda x: x[0])
        victim = self._client_slots[conn]
        victim.handed_over = True
        victim.scope.cancel()
        self.counters["clients_evicted"] += 1
        self.log.info(
            "client_closed",
            peer="client",
            reason=f"evicted: client slots full ({self.gate.caps.max_clients}), idle for "
            f"{trio.current_time() - since:.1f}s",
        )
        return True

    async def run(self, conn: FramedStream, hello: PeerHello, direction: str, addr: str) -> None:
        """Serve one handshaken connection until it ends; closes it."""
        if direction == "out":
            # Our own dial: it spends a descriptor of the reserve, and counts from now on.
            self.gate.open += 1
        try:
            await self._run(conn, hello, direction, addr)
        finally:
            if direction == "out":
                self.gate.close()

    async def _run(self, conn: FramedStream, hello: PeerHello, direction: str, addr: str) -> None:
        conn.frame_timeout = self.cfg.limits.frame_timeout_s
        nid = hello.node_id
        if self.is_banned(nid):
            await refuse_quietly(conn, "banned for misbehaviour; try again later")
            await conn.aclose()
            return
        existing = self._conns.get(nid)
        if existing is not None:
            # Both sides dialed at once: keep the connection dialed by the smaller node id, on both sides.
            dialer = self.node_id if direction == "out" else nid
            if dialer != min(self.node_id, nid):
                await conn.aclose()
                return
            existing.scope.cancel()
            while self._conns.get(nid) is existing:
                await trio.sleep(0)
            if nid in self._conns:  # yet another connection won meanwhile
                await conn.aclose()
                return
        send, recv = trio.open_memory_channel[bytes](self.cfg.peers.send_queue)
        now = trio.current_time()
        peer = PeerConn(nid, conn, direction, addr, hello.role, send, recv, last_rx=now, since=now)
        self._conns[nid] = peer
        if addr:
            self.book.note(addr, nid)
        self.log.info("peer_connected", peer=short(nid), addr=addr, direction=direction, role=hello.role)
        reason = "closed"
        try:
            with peer.scope:
                await self.perform(self.core.on_peer_connected(trio.current_time(), nid))
                self.send(nid, GetPeers())
                async with trio.open_nursery() as n:
                    n.start_soon(self._writer, peer)
                    n.start_soon(self._keepalive, peer)
                    reason = await self._reader(peer)
                    n.cancel_scope.cancel()
            if peer.close_reason:
                reason = peer.close_reason
            elif peer.scope.cancelled_caught and reason == "closed":
                reason = "disconnected by this node"
        finally:
            # Only the registered connection tells the core; a replaced duplicate must not remove
            # the peer that replaced it. Both happen before the first await.
            effects: list[Effect] = []
            if self._conns.get(nid) is peer:
                del self._conns[nid]
                self.forget_limits(nid)
                effects = self.core.on_peer_disconnected(trio.current_time(), nid)
            with trio.CancelScope(shield=True):
                await self.perform(effects)
                await conn.aclose()
            self.log.info("peer_disconnected", peer=short(nid), reason=reason)

    async def _reader(self, peer: PeerConn) -> str:
        rx_mark = peer.conn.bytes_in  # the handshake's bytes are not counted
        while True:
            try:
                msg = await peer.conn.receive()
            except DecodeError as exc:
                return await self._malformed(peer, exc)
            except PEER_ERRORS as exc:
                return str(exc) or type(exc).__name__
            self.counters["rx_frames"] += 1
            size = peer.conn.bytes_in - rx_mark
            self.counters["rx_bytes"] += size
            rx_mark = peer.conn.bytes_in
            peer.last_rx = trio.current_time()
            now = peer.last_rx
            await self._stranger_rx(peer, now)
            if not isinstance(msg, Bundle):
                ended = await self._handle(peer, msg, now, size)
                if ended:
                    return ended
                continue
            self.counters["rx_bundles"] += 1
            for raw in msg.frames:
                try:
                    inner = decode(raw, max_len=self.cfg.limits.max_frame)
                    if isinstance(inner, Bundle):
                        raise DecodeError("a Bundle inside a Bundle")
                except DecodeError as exc:
                    return await self._malformed(peer, exc)
                ended = await self._handle(peer, inner, now, len(raw) + FRAME_HEADER)
                if ended:
                    return ended

    async def _malformed(self, peer: PeerConn, exc: DecodeError) -> str:
        self.counters["frames_rejected"] += 1
        self.log.warning("message_rejected", kind="frame", reason=str(exc), peer=short(peer.node_id))
        await refuse_quietly(peer.conn, f"malformed frame: {exc}")
        return f"malformed frame: {exc}"

    async def _handle(self, peer: PeerConn, msg: Message, now: float, size: int) -> str:
        """One message from ``peer`` (alone in its frame or out of a Bundle, ``size`` bytes as a frame
        of its own); "" or why it ended."""
        self.counters["rx_messages"] += 1
        metrics = self.metrics
        if metrics is not None and isinstance(msg, (Ping, Pong, GetPeers, Peers, Refuse)):
            metrics.received(msg, size, False)  # the others below, with their duplicates
        if isinstance(msg, (Ping, Pong, GetPeers, Peers)):
            self.core.earn(now, peer.node_id, wire_size(msg))
            if not self._link_allowed(peer, msg, now):
                return ""
        if isinstance(msg, Ping):
            self._answer(peer, Pong(nonce=msg.nonce), now)
        elif isinstance(msg, Pong):
            pass
        elif isinstance(msg, GetPeers):
            self._answer(peer, self._peers_reply(peer, now), now)
        elif isinstance(msg, Peers):
            self.book.learn(msg, peer.node_id)
        elif isinstance(msg, Refuse):
            return f"refused by peer: {msg.reason}"
        else:
            first = None
            if isinstance(msg, Gossip):
                mid = message_id(msg.data)
                if not self.core.router.seen(mid):
                    first = mid
            if metrics is None:
                effects = self.core.on_message(now, peer.node_id, msg)
            else:
                metrics.received(msg, size, isinstance(msg, Gossip) and first is None)
                checks, started = self.core.votes.checks, time.perf_counter()
                effects = self.core.on_message(now, peer.node_id, msg)
                metrics.signatures_checked(time.perf_counter() - started, self.core.votes.checks - checks)
            if first is not None:
                self._note_first(first, peer.node_id)
            if isinstance(msg, CertBatch):
                peer.useful += sum(1 for e in effects if isinstance(e, PersistApplied))
            await self.perform(effects)
        return ""

    async def _stranger_rx(self, peer: PeerConn, now: float) -> None:
        """Until a non-committee peer has delivered something useful, what it sends is read at most at
        ``peers.stranger_rx_rate`` bytes per second (``stranger_rx_burst`` in reserve): beyond, this
        reader waits before it reads on, so TCP holds the sender back. A stranger's flood (IHAVE of
        random ids, say) costs at most that much decoding; a useful peer is never held."""
        received = peer.conn.bytes_in - peer.rx_counted
        peer.rx_counted = peer.conn.bytes_in
        if peer.useful or self.is_committee(peer.node_id):
            return
        if peer.rx is None:
            cfg = self.cfg.peers
            peer.rx = TokenBucket(float(cfg.stranger_rx_rate), float(cfg.stranger_rx_burst))
        left = peer.rx.charge(now, received)
        if left < 0:
            self.counters["rx_throttled"] += 1
            await trio.sleep(-left / peer.rx.rate)

    # == link-level requests ==========================================================================
    def _link_allowed(self, peer: PeerConn, msg: Message, now: float) -> bool:
        """Is this link-level message within ``peer``'s rate limit for its kind? If not it is not
        answered (nor taken in), and counted; out of strikes, the peer is penalized."""
        kind = type(msg).__name__
        limit = self.link_limits.get(kind)
        if limit is None or limit.take(peer.node_id, now, 1):
            return True
        self.counters["link_rate_limited"] += 1
        if not self.link_strikes.take(peer.node_id, now, 1):
            self.penalize(
                peer.node_id, f"rate limited: {kind} beyond {limit.rate:g}/s (burst {limit.burst:g})"
            )
        return False

    def _peers_reply(self, peer: PeerConn, now: float) -> Peers:
        """Our peer list for ``peer``, trimmed to the reply credit it has (committee: whole)."""
        reply = Peers(peers=self.peer_list(exclude=peer.node_id))
        credit = self.core.reply_credit(now, peer.node_id)
        while credit is not None and reply.peers and wire_size(reply) > credit:
            reply = Peers(peers=reply.peers[: len(reply.peers) // 2])
        return reply

    def _answer(self, peer: PeerConn, msg: Message, now: float) -> None:
        """Send a link-level answer if the peer's reply credit covers it (counted if not)."""
        if self.core.spend(now, peer.node_id, msg):
            self.send(peer.node_id, msg)
        else:
            self.counters["link_credit_trimmed"] += 1

    def forget_limits(self, nid: NodeId) -> None:
        for limit in self.link_limits.values():
            limit.forget(nid)
        self.link_strikes.forget(nid)

    async def _writer(self, peer: PeerConn) -> None:
        p = self.cfg.peers
        high_water = p.send_queue_bytes // 2
        try:
            async for data in peer.recv:
                # Coalesce whatever else is queued into one write: one syscall, not one per frame,
                # and the small messages into Bundle frames.
                queued = [data]
                size = taken = len(data)
                while size < COALESCE_BYTES:
                    try:
                        more = peer.recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                    queued.append(more)
                    size += len(more) + 4
                    taken += len(more)
                chunks = bundled(queued)
                now = trio.current_time()
                if peer.queued_bytes <= high_water:
                    peer.over_since = None
                deadline = now + p.write_timeout_s
                if peer.over_since is not None:
                    deadline = min(deadline, peer.over_since + p.write_timeout_s)
                with trio.move_on_at(deadline) as scope:
                    await peer.conn.send_raw(b"".join(chunks))
                if scope.cancelled_caught:
                    self._slow(peer, now)
                    return
                # Only now are the bytes gone from this process (the write in flight counts).
                peer.queued_bytes -= taken
                if peer.queued_bytes <= high_water:
                    peer.over_since = None
        except PEER_ERRORS:
            peer.scope.cancel()

    def _slow(self, peer: PeerConn, write_started: float) -> None:
        """Disconnect a peer that does not take what is sent to it (see the module docstring)."""
        p = self.cfg.peers
        now = trio.current_time()
        if peer.over_since is not None and now - peer.over_since >= p.write_timeout_s:
            reason = f"send queue above {p.send_queue_bytes // 2} bytes for {p.write_timeout_s:g}s"
        else:
            reason = f"a write did not complete in {now - write_started:g}s"
        self.counters["peers_slow"] += 1
        self.log.warning(
            "peer_slow",
            peer=short(peer.node_id),
            reason=reason,
            queued_bytes=peer.queued_bytes,
            dropped=peer.dropped,
        )
        peer.close_reason = f"slow: {reason}"
        peer.scope.cancel()

    async def _keepalive(self, peer: PeerConn) -> None:
        p = self.cfg.peers
        nonce = 0
        while True:
            await trio.sleep(p.keepalive_s)
            if trio.current_time() - peer.last_rx > p.idle_timeout_s:
                self.log.warning(
                    "peer_idle", peer=short(peer.node_id), idle_s=round(trio.current_time() - peer.last_rx, 3)
                )
                peer.scope.cancel()
                return
            nonce += 1
            self.send(peer.node_id, Ping(nonce=nonce))

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "node_id": p.node_id.hex(),
                "addr": p.addr,
                "direction": p.direction,
                "role": p.role,
                "useful": p.useful,
            }
            for p in self._conns.values()
        ]


def bundled(queued: Sequence[bytes]) -> list[bytes]:
    """Frames for these encoded messages, in order: runs of small ones in ``Bundle`` frames (at most
    ``BUNDLE_ITEMS`` and about ``BUNDLE_BYTES`` each), a lone or large one in a frame of its own."""
    out: list[bytes] = []
    run: list[bytes] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if len(run) == 1:
            out.append(frame(run[0]))
        elif run:
            out.append(frame(Bundle(frames=tuple(run)).encode()))
        run.clear()
        size = 0

    for data in queued:
        if len(data) > BUNDLE_BYTES // 2:
            flush()
            out.append(frame(data))
            continue
        if len(run) >= BUNDLE_ITEMS or size + len(data) > BUNDLE_BYTES:
            flush()
        run.append(data)
        size += len(data) + 5
    flush()
    return out


async def refuse_quietly(conn: FramedStream, reason: str) -> None:
    """Tell the other side why we close, if it still listens (best effort, bounded)."""
    with trio.move_on_after(1):
        try:
            await conn.send(Refuse(reason=reason[:256]))
        except PEER_ERRORS:
            pass  # it is gone already; the reason is in our log


def addresses(peers: PeerSet, book: AddressBook, nids: Iterable[bytes]) -> set[str]:
    """Every dialable address known for these node ids: their connections' and the address book's."""
    out: set[str] = set()
    for nid in nids:
        peer = peers.get(nid)
        if peer is not None and peer.addr:
            out.add(peer.addr)
        out |= book.addresses_of(nid)
    return out


__all__ = ["AddressBook", "PeerConn", "PeerSet", "SlotHolder", "admit_inbound", "refuse_quietly", "addresses"]
