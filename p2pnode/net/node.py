"""The Trio node driver: runs the sans-I/O core, the transport, the store and the verifier.

Structure: one nursery per node. Services: the listener, the heartbeat ticker, the dialer, peer
exchange, the group-commit writer and the proof verifier; plus one reader, one writer and one
keepalive task per peer, and one task per client connection.

The driver performs the core's effects in order (see :mod:`p2pnode.core.effects`): sends go to the
peer's bounded queue (a full queue drops the message and counts it), persistence is awaited before
anything after it, and log events are written as structlog lines.

Durable before visible: the writes of one effect list are queued before the first await, so the
store commits them in the order the core produced them, across all tasks; the writer reports
applied certificates durable to the core (``on_durable``) right after their commit returned, in
that order, and only then are waiting clients told "settled". A failed commit (``store_failed``)
stops the node: nothing after it is acknowledged and no vote waits on it.

Resource handling: cancelling ``run`` closes every connection and stops the worker processes; the
store is closed by whoever opened it. Error handling: a peer's bad input closes or penalizes that peer
and never the node; ``LocalError`` (our configuration) stops the node with its message.
"""

from __future__ import annotations

import os
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

from p2pnode import logs
from p2pnode.config import NodeConfig, parse_hostport
from p2pnode.core.effects import (
    Blocked,
    Disconnect,
    Effect,
    Emit,
    OrderOutcome,
    PersistApplied,
    PersistLock,
    Send,
    Settled,
    VerifyProofs,
)
from p2pnode.core.gossip import GossipParams
from p2pnode.core.node import CoreParams, NodeCore
from p2pnode.core.shielded import public_signals
from p2pnode.core.validator import BYZANTINE_BEHAVIOURS
from p2pnode.crypto import NodeKey
from p2pnode.errors import DecodeError, HandshakeError, LocalError, StorageError
from p2pnode.genesis import Genesis
from p2pnode.net.clients import PEER_ERRORS, ClientService
from p2pnode.net.conn import FramedStream, PeerHello, handshake
from p2pnode.net.transport import TcpTransport, Transport
from p2pnode.net.verifier import ProofVerifier
from p2pnode.store import Store
from p2pnode.store.thread import StoreThread
from p2pnode.wire.messages import (
    ErrorReply,
    FaultControl,
    GetPeers,
    Hello,
    Message,
    Order,
    Peers,
    Ping,
    Pong,
    Refuse,
    ShieldedOrder,
    StatusReply,
)
from p2pnode.wire.types import Digest, NodeId


def short(node_id: bytes) -> str:
    return node_id.hex()[:16]


@dataclass(eq=False)
class PeerConn:
    node_id: NodeId
    conn: FramedStream
    direction: str  # "in" | "out"
    addr: str  # dialable "host:port", or "" if the peer does not listen
    role: str
    send: trio.MemorySendChannel[tuple[float, bytes]]
    recv: trio.MemoryReceiveChannel[tuple[float, bytes]]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    last_rx: float = 0.0
    dropped: int = 0


class Node:
    """One p2pnode node. ``run`` is a Trio service: ``await nursery.start(node.run)`` returns the port."""

    def __init__(
        self,
        cfg: NodeConfig,
        key: NodeKey,
        genesis: Genesis,
        *,
        store: Store,
        transport: Transport | None = None,
        name: str = "",
        rng: random.Random | None = None,
        byzantine: str | None = None,
        store_thread: bool | None = None,
    ) -> None:
        self.cfg = cfg
        if byzantine is None:
            byzantine = cfg.testing.byzantine if cfg.testing.enabled else ""
        self.byzantine = byzantine
        self.key = key
        self.node_id = NodeId(key.public)
        self.genesis = genesis
        self.name = name or cfg.node.name or short(key.public)
        self.store = store
        self.transport: Transport = transport or TcpTransport()
        self.host, self.port = parse_hostport(cfg.node.listen, key="node.listen")
        self.rng = rng or random.Random()
        g = cfg.gossip
        params = CoreParams(
            gossip=GossipParams(
                eager_fanout=g.eager_fanout,
                origin_fanout=g.origin_fanout,
                lazy_fanout=g.lazy_fanout,
                seen_cache_size=g.seen_cache_size,
                seen_ttl=float(g.seen_ttl_s),
                iwant_timeout=g.iwant_timeout_ms / 1000,
                max_ihave=g.max_ihave,
            ),
            pending_orders=cfg.limits.pending_orders,
            held_certificates=cfg.limits.held_certificates,
            sync_interval=cfg.sync.interval_ms / 1000,
            sync_batch=cfg.sync.batch,
            certificate_proofs=cfg.verify.certificate_proofs,
            future_seqs=cfg.limits.future_seqs,
        )
        self.core = NodeCore(
            key=key,
            chain_id=genesis.chain_id,
            validators=[v.node_id for v in genesis.validators],
            balances=dict(genesis.balances),
            params=params,
            rng=self.rng,
            byzantine=byzantine if byzantine in BYZANTINE_BEHAVIOURS else "",
            shielded=genesis.shielded_vk is not None,
        )
        self.role = "validator" if self.core.validator is not None else "full"
        self.log: Any = logs.get_logger(node=self.name, node_id=short(self.node_id))
        self.peers: dict[NodeId, PeerConn] = {}
        self.known: dict[str, NodeId | None] = {}  # dialable "host:port" -> node id once known
        self._backoff: dict[str, tuple[float, float]] = {}  # addr -> (next attempt, current delay)
        self._dialing: set[str] = set()
        self.clients = ClientService(self)
        self._verify_send, self._verify_recv = trio.open_memory_channel[tuple[Digest, Any]](
            cfg.limits.pending_orders
        )
        # Writes in the order the core produced them; bounded by the core's own bounds on what can
        # be in flight (pending orders, held certificates), so appending never waits.
        self._writes: deque[tuple[PersistLock | PersistApplied, trio.Event]] = deque()
        self._writes_ready = trio.Event()
        # Commits on a thread of their own (a real node), or inline (deterministic in-process tests).
        self._store_thread = cfg.verify.workers > 0 if store_thread is None else store_thread
        self.verifier = ProofVerifier(cfg.verify.workers, genesis.shielded_vk)
        self.ready = trio.Event()
        self.stopped = trio.Event()  # set when ``run`` has returned (or failed)
        self.started_at = 0.0
        self.counters = {"frames_rejected": 0, "handshakes_refused": 0, "send_dropped": 0, "clients": 0}
        self._nursery: trio.Nursery | None = None
        self.blocked: set[bytes] = set()  # test-only fault injection: peers we drop all traffic with
        self.banned: dict[bytes, float] = {}  # peers disconnected for misbehaving -> refused until
        self.link_delay = 0.0  # test-only: added to every send, in seconds
        for b in cfg.node.bootstrap:
            self.known.setdefault(b, None)

    # == service ====================================================================================
    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        snap = (
            await trio.to_thread.run_sync(self.store.load) if self.cfg.verify.workers else self.store.load()
        )
        self.core.restore(snap.accounts, snap.certs, snap.locks, snap.notes)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.port = await nursery.start(self.transport.serve, self.host, self.port, self._on_incoming)
                self.started_at = trio.current_time()
                self.log.info(
                    "node_started",
                    chain_id=self.genesis.chain_id.hex(),
                    listen=f"{self.host}:{self.port}",
                    role=self.role,
                    applied=self.core.ledger.applied_count(),
                    root=self.core.ledger.root().hex(),
                )
                await self.verifier.warm_up()
                nursery.start_soon(self._writer)
                nursery.start_soon(self._verifier)
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._dialer)
                nursery.start_soon(self._exchanger)
                if self.byzantine and self.byzantine not in BYZANTINE_BEHAVIOURS:
                    from p2pnode.net.byzantine import run_peer_behaviour

                    nursery.start_soon(run_peer_behaviour, self, self.byzantine)
                self.ready.set()
                self.log.info("node_ready")
                task_status.started(self.port)
        finally:
            self.verifier.close()
            self.stopped.set()

    def stop(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # == effects ====================================================================================
    async def perform(self, effects: list[Effect]) -> None:
        # Queue this list's writes before anything can yield, so that the commit order is the order
        # the core changed its state in, whatever other tasks do meanwhile.
        tickets = {
            i: self._enqueue_write(e)
            for i, e in enumerate(effects)
            if isinstance(e, (PersistLock, PersistApplied))
        }
        for i, e in enumerate(effects):
            if isinstance(e, Send):
                self._send(e.peer, e.msg)
            elif isinstance(e, Emit):
                self.log.info(e.event, **e.fields)
            elif isinstance(e, VerifyProofs):
                for item in e.orders:
                    try:
                        self._verify_send.send_nowait(item)
                    except trio.WouldBlock:
                        self.log.warning("verify_queue_full", tx=item[0].hex())
            elif isinstance(e, PersistLock):
                await tickets[i].wait()
                await self.perform(self.core.on_lock_persisted(trio.current_time(), e.digest))
            elif isinstance(e, PersistApplied):
                await tickets[i].wait()  # the writer already made it visible (on_durable)
            elif isinstance(e, Settled):
                self.clients.on_settled(e.digest)
            elif isinstance(e, Blocked):
                for digest in e.digests:
                    self.clients.on_settled(digest)  # wakes the wait; the reply names the block
            elif isinstance(e, OrderOutcome):
                self.clients.on_outcome(e)
            elif isinstance(e, Disconnect):
                self.banned[e.peer] = trio.current_time() + self.cfg.peers.ban_s
                peer = self.peers.get(e.peer)
                if peer is not None:
                    self.log.warning(
                        "peer_penalized", peer=short(e.peer), reason=e.reason, ban_s=self.cfg.peers.ban_s
                    )
                    peer.scope.cancel()

    def _send(self, node_id: NodeId, msg: Message) -> None:
        peer = self.peers.get(node_id)
        if peer is None:
            return
        try:
            peer.send.send_nowait((trio.current_time(), msg.encode()))
        except trio.WouldBlock:
            peer.dropped += 1
            self.counters["send_dropped"] += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the peer is being torn down

    def _enqueue_write(self, write: PersistLock | PersistApplied) -> trio.Event:
        done = trio.Event()
        self._writes.append((write, done))
        self._writes_ready.set()
        return done

    async def _writer(self) -> None:
        """Group commit: everything queued while a commit runs goes into the next one.

        After a commit returns, its applied certificates become visible to clients (the core's
        ``on_durable``, whose ``Settled`` effects wake waiting clients), then the waiting tasks go
        on. With ``store_thread`` commits run on one long-lived thread that owns the SQLite
        connection; starting a thread per commit cost more CPU than the commit.

        Error handling: a failed commit is logged as ``store_failed`` with its cause and re-raised,
        which stops the node; the writes in it and after it are never acknowledged.
        """
        thread: StoreThread | None = StoreThread(self.store) if self._store_thread else None
        try:
            while True:
                await self._writes_ready.wait()
                self._writes_ready = trio.Event()
                batch = list(self._writes)
                self._writes.clear()
                if not batch:
                    continue
                writes = [w for w, _ in batch]
                try:
                    if thread is not None:
                        await thread.commit(writes)
                    else:
                        self.store.commit(writes)
                except StorageError as exc:
                    self.log.error("store_failed", cause=exc.cause, error=exc.detail, writes=len(writes))
                    raise
                except LocalError as exc:  # the store thread failed in another way: our bug
                    self.log.error("store_failed", cause="database error", error=str(exc), writes=len(writes))
                    raise
                applied = [w for w in writes if isinstance(w, PersistApplied)]
                if applied:
                    await self.perform(self.core.on_durable(trio.current_time(), applied))
                for _, done in batch:
                    done.set()
        finally:
            if thread is not None:
                thread.stop()

    async def _verifier(self) -> None:
        batch_max = self.cfg.verify.batch_max
        while True:
            first = await self._verify_recv.receive()
            items = [first]
            while len(items) < batch_max:
                try:
                    items.append(self._verify_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            work = [verify_item(digest, order) for digest, order in items]
            results, duration_us = await self.verifier.verify(work)
            per = duration_us // max(1, len(items))
            out = [
                (digest, order, ok, per, len(items))
                for (digest, order), ok in zip(items, results, strict=True)
            ]
            await self.perform(self.core.on_proofs_verified(trio.current_time(), out))

    async def _ticker(self) -> None:
        period = self.cfg.gossip.heartbeat_ms / 1000
        while True:
            await trio.sleep(period)
            await self.perform(self.core.tick(trio.current_time()))

    # == peers ======================================================================================
    async def _on_incoming(self, stream: trio.abc.Stream, addr: str) -> None:
        conn = FramedStream(stream, self.cfg.limits.max_frame)
        try:
            with trio.fail_after(self.cfg.peers.handshake_timeout_s):
                first = await conn.receive()
            if not isinstance(first, Hello):
                self.counters["clients"] += 1
                await self.clients.serve(conn, first)
                return
            with trio.fail_after(self.cfg.peers.handshake_timeout_s):
                hello = await handshake(
                    conn, self.key, self.genesis.chain_id, self.port, self.role, first=first
                )
                if len(self.peers) >= self.cfg.peers.max_connections:
                    # Full: hand the newcomer other addresses before refusing, so that it can fill up.
                    await conn.send(Peers(peers=self._peer_list(exclude=hello.node_id)))
                    await conn.send(Refuse(reason="too many connections"))
                    raise HandshakeError("too many connections")
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
        await self._run_peer(conn, hello, "in", dial_addr)

    async def _dial(self, addr: str) -> None:
        host, port = parse_hostport(addr)
        try:
            with trio.fail_after(self.cfg.peers.handshake_timeout_s):
                stream = await self.transport.connect(host, port)
                conn = FramedStream(stream, self.cfg.limits.max_frame)
                try:
                    hello = await handshake(conn, self.key, self.genesis.chain_id, self.port, self.role)
                except BaseException:
                    await conn.aclose()
                    raise
        except (trio.TooSlowError, *PEER_ERRORS) as exc:
            self._note_failure(addr)
            if isinstance(exc, HandshakeError):
                self.counters["handshakes_refused"] += 1
                self.log.warning("handshake_refused", addr=addr, reason=str(exc))
            else:
                self.log.debug("dial_failed", addr=addr, reason=str(exc) or type(exc).__name__)
            return
        finally:
            self._dialing.discard(addr)
        self._backoff.pop(addr, None)
        self.known[addr] = hello.node_id
        await self._run_peer(conn, hello, "out", addr)

    def _is_banned(self, nid: bytes) -> bool:
        until = self.banned.get(nid)
        if until is None:
            return False
        if until <= trio.current_time():
            del self.banned[nid]
            return False
        return True

    def _note_failure(self, addr: str) -> None:
        p = self.cfg.peers
        _, delay = self._backoff.get(addr, (0.0, p.dial_backoff_min_ms / 1000))
        jittered = delay * (0.5 + self.rng.random())
        self._backoff[addr] = (trio.current_time() + jittered, min(delay * 2, p.dial_backoff_max_ms / 1000))

    async def _run_peer(self, conn: FramedStream, hello: PeerHello, direction: str, addr: str) -> None:
        nid = hello.node_id
        if nid in self.blocked or self._is_banned(nid):
            if nid not in self.blocked:
                await refuse_quietly(conn, "banned for misbehaviour; try again later")
            await conn.aclose()
            return
        existing = self.peers.get(nid)
        if existing is not None:
            # Both sides dialed at once: keep the connection dialed by the smaller node id, on both sides.
            dialer = self.node_id if direction == "out" else nid
            if dialer != min(self.node_id, nid):
                await conn.aclose()
                return
            existing.scope.cancel()
            while self.peers.get(nid) is existing:
                await trio.sleep(0)
            if nid in self.peers:  # yet another connection won meanwhile
                await conn.aclose()
                return
        send, recv = trio.open_memory_channel[tuple[float, bytes]](self.cfg.peers.send_queue)
        peer = PeerConn(nid, conn, direction, addr, hello.role, send, recv, last_rx=trio.current_time())
        self.peers[nid] = peer
        if addr:
            self.known[addr] = nid
        self.log.info("peer_connected", peer=short(nid), addr=addr, direction=direction, role=hello.role)
        reason = "closed"
        try:
            with peer.scope:
                await self.perform(self.core.on_peer_connected(trio.current_time(), nid))
                self._send(nid, GetPeers())
                async with trio.open_nursery() as n:
                    n.start_soon(self._peer_writer, peer)
                    n.start_soon(self._peer_keepalive, peer)
                    reason = await self._peer_reader(peer)
                    n.cancel_scope.cancel()
            if peer.scope.cancelled_caught and reason == "closed":
                reason = "disconnected by this node"
        finally:
            # Only the registered connection tells the core; a replaced duplicate must not remove
            # the peer that replaced it. Both happen before the first await.
            effects: list[Effect] = []
            if self.peers.get(nid) is peer:
                del self.peers[nid]
                effects = self.core.on_peer_disconnected(trio.current_time(), nid)
            with trio.CancelScope(shield=True):
                await self.perform(effects)
                await conn.aclose()
            self.log.info("peer_disconnected", peer=short(nid), reason=reason)

    async def _peer_reader(self, peer: PeerConn) -> str:
        while True:
            try:
                msg = await peer.conn.receive()
            except DecodeError as exc:
                self.counters["frames_rejected"] += 1
                self.log.warning("message_rejected", kind="frame", reason=str(exc), peer=short(peer.node_id))
                await refuse_quietly(peer.conn, f"malformed frame: {exc}")
                return f"malformed frame: {exc}"
            except PEER_ERRORS as exc:
                return str(exc) or type(exc).__name__
            peer.last_rx = trio.current_time()
            now = peer.last_rx
            if isinstance(msg, Ping):
                self._send(peer.node_id, Pong(nonce=msg.nonce))
            elif isinstance(msg, Pong):
                pass
            elif isinstance(msg, GetPeers):
                self._send(peer.node_id, Peers(peers=self._peer_list(exclude=peer.node_id)))
            elif isinstance(msg, Peers):
                self._learn(msg, peer)
            elif isinstance(msg, Refuse):
                return f"refused by peer: {msg.reason}"
            else:
                await self.perform(self.core.on_message(now, peer.node_id, msg))

    async def _peer_writer(self, peer: PeerConn) -> None:
        try:
            async for queued_at, data in peer.recv:
                if self.link_delay:
                    await trio.sleep_until(queued_at + self.link_delay)
                    await peer.conn.send_raw(data_frame(data))
                    continue
                # Coalesce whatever else is queued into one write: one syscall, not one per frame.
                chunks = [data_frame(data)]
                size = len(chunks[0])
                while size < 256 * 1024:
                    try:
                        _, more = peer.recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                    chunks.append(data_frame(more))
                    size += len(chunks[-1])
                await peer.conn.send_raw(b"".join(chunks))
        except PEER_ERRORS:
            peer.scope.cancel()

    async def _peer_keepalive(self, peer: PeerConn) -> None:
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
            self._send(peer.node_id, Ping(nonce=nonce))

    def _peer_list(self, exclude: NodeId) -> tuple[tuple[str, int, bytes], ...]:
        out = []
        for p in self.peers.values():
            if p.node_id != exclude and p.addr:
                host, port = parse_hostport(p.addr)
                out.append((host, port, bytes(p.node_id)))
        return tuple(out[:64])

    def _learn(self, msg: Peers, source: PeerConn) -> None:
        if len(msg.peers) < 64:  # a full list may be truncated: then it says nothing reliable
            self.core.on_peer_neighbors(source.node_id, (nid for _, _, nid in msg.peers))
        for host, port, nid in msg.peers:
            if nid == self.node_id or port == 0:
                continue
            addr = f"{host}:{port}"
            if addr not in self.known and len(self.known) < 4 * self.cfg.peers.max_connections:
                self.known[addr] = NodeId(nid)

    async def _dialer(self) -> None:
        assert self._nursery is not None
        while True:
            want = self.cfg.peers.target - len(self.peers) - len(self._dialing)
            if want > 0:
                now = trio.current_time()
                connected = set(self.peers)
                candidates = [
                    a
                    for a, nid in self.known.items()
                    if a not in self._dialing
                    and nid not in connected
                    and nid != self.node_id
                    and nid not in self.blocked
                    and not (nid is not None and self._is_banned(nid))
                    and a != f"{self.host}:{self.port}"
                    and self._backoff.get(a, (0.0, 0.0))[0] <= now
                ]
                self.rng.shuffle(candidates)
                for addr in candidates[:want]:
                    self._dialing.add(addr)
                    self._nursery.start_soon(self._dial, addr)
            await trio.sleep(self.cfg.peers.dial_backoff_min_ms / 1000)

    async def _exchanger(self) -> None:
        """Peer exchange: ask for more peers while below target, and tell every peer our peer set
        whenever it changed (gossip uses neighbours' peer sets to skip pushes that would duplicate)."""
        told: frozenset[NodeId] = frozenset()
        while True:
            await trio.sleep(self.cfg.peers.exchange_interval_s)
            if self.peers and len(self.peers) < self.cfg.peers.target:
                self._send(self.rng.choice(list(self.peers)), GetPeers())
            current = frozenset(self.peers)
            if current != told:
                told = current
                for nid in current:
                    self._send(nid, Peers(peers=self._peer_list(exclude=nid)))

    def fault_control(self, msg: FaultControl) -> Message:
        """Test-only partitions and slow links (``testing.fault_control``)."""
        if not (self.cfg.testing.enabled and self.cfg.testing.fault_control):
            return ErrorReply(reason="fault control is disabled on this node")
        self.blocked = set(msg.blocked)
        self.link_delay = msg.delay_ms / 1000
        for nid in self.blocked:
            peer = self.peers.get(NodeId(nid))
            if peer is not None:
                peer.scope.cancel()
        self.log.warning("fault_control", blocked=[short(b) for b in self.blocked], delay_ms=msg.delay_ms)
        return StatusReply(info=self.status())

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "node": self.name,
            "node_id": self.node_id.hex(),
            "chain_id": self.genesis.chain_id.hex(),
            "role": self.role,
            "listen": f"{self.host}:{self.port}",
            "ready": self.ready.is_set(),
            "peer_count": len(self.peers),
            "peers": [
                {"node_id": p.node_id.hex(), "addr": p.addr, "direction": p.direction, "role": p.role}
                for p in self.peers.values()
            ],
            "pid": os.getpid(),
            "uptime_s": round(trio.current_time() - self.started_at, 3),
            "byzantine": self.byzantine,
            "blocked": [b.hex() for b in self.blocked],
        }
        info.update(self.core.status())
        info["counters"] = dict(self.counters)
        return info


async def refuse_quietly(conn: FramedStream, reason: str) -> None:
    """Tell the other side why we close, if it still listens (best effort, bounded)."""
    with trio.move_on_after(1):
        try:
            await conn.send(Refuse(reason=reason[:256]))
        except PEER_ERRORS:
            pass  # it is gone already; the reason is in our log


def verify_item(digest: Digest, order: Order | ShieldedOrder) -> tuple[Any, ...]:
    """What a verification worker needs for one order (see ``p2pnode.net.verifier.Item``)."""
    if isinstance(order, Order):
        return ("t", order.sender_key, digest, order.proof)
    account = (order.account_key, digest, order.account_proof) if order.account_key else None
    return ("z", public_signals(order.tx), order.proof, account)


def data_frame(data: bytes) -> bytes:
    from p2pnode.wire.codec import frame

    return frame(data)


__all__ = ["Node", "refuse_quietly", "verify_item"]
