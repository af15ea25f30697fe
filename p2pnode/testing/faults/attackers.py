"""Test-only attacker peer roles: each attacks over connections of its own, made with fresh keys.

A role of this module runs as a service of its node (``[testing] enabled = true, byzantine =
"<role>"``), like those of :mod:`.peers`, but it does not use the node's own peer connections: it
dials the honest nodes itself (every address its node knows, but its own), does the real handshake
with a fresh Ed25519 key per connection (``byzantine_identity``, with the key's short node id and the
connection's local address, which is what a victim logs as ``addr``), and when a victim closes the
connection (a ban, an eviction, a refusal), it comes back with another fresh key. That is what a
stranger can do to a node: a ban keyed by node id alone stops nothing.

Every role is bounded: in rate (per connection, per tick of ``TICK_S``), in connections per victim
and in identities (fresh keys) per connection slot, so that a scenario measures the victims, not this
node's CPU. The node logs ``byzantine_behaviour_started`` (role) once, ``START_S[role]`` seconds after
it started (so that a scenario's load has a baseline first), and ``byzantine_stats`` (sent messages,
bytes out and in over its attack connections, identities, connections open) every ``STATS_S``.

Roles (each one attack of docs/dos.md's threat list):

- ``bad_proofs_fresh_keys`` orders with well-formed invalid proofs of real funded senders (the
                            builder of ``relay_invalid``), ``BAD_PROOF_RATE`` per connection.
- ``ihave_flood``           IHAVE of 1024 random ids, ``IHAVE_RATE`` per connection (about 100,000
                            ids per second to each victim); the IWANTs they answer with are not served.
- ``iwant_repeat``          IWANT naming the ids the victim itself pushed or announced to this
                            connection (so it holds them), the same ids again and again.
- ``sync_empty``            empty ``SyncHeads`` (8 bytes: "I have nothing") and ``SyncSummary`` with a
                            random root, each ``SYNC_RATE`` per connection.
- ``never_read``            handshake, then never read a byte (a 4 KiB receive buffer): ``GetPeers``
                            requests, ``NEVER_READ_RATE`` per connection, each asking for a reply.
- ``future_seqs``           valid orders of a funded account with seqs ahead of its next one:
                            ``FUTURE_VARIANTS`` different transfers for each seq of the window
                            (next+1 .. next+``FUTURE_AHEAD``), ``FUTURE_RATE`` per connection. The
                            account is the last account file of the cluster directory
                            (``<cluster>/accounts/account-<i>.json``, beside the node's ``key_file``'s
                            directory), which a scenario keeps out of its load (``ACCOUNT_ROLES``).
- ``sybil_slots``           ``SYBIL_PEERS`` connections to every victim, each doing nothing but
                            answering pings, each re-dialled with a fresh key as soon as it is cut
                            (evicted, refused, or the victim restarted).
- ``vote_replay``           votes of the certificates its node applied (rebuilt from the certificates'
                            signer entries signed over a batch of one: the same bytes as the votes
                            the validators sent each other; full nodes never see a vote), re-sent once their
                            seen-ids expired on the victims (``gossip.seen_ttl_s`` of its own config,
                            the cluster's), ``VOTE_RATE`` per connection.

Nothing here is reachable unless the node's config enables testing and names the role
(:func:`p2pnode.testing.faults.node_faults`).
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2pnode.client import load_account
from p2pnode.config import parse_hostport
from p2pnode.core.payments import make_order, message_id, statement_digest
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.errors import DecodeError, HandshakeError, LocalError, P2PNodeError
from p2pnode.net.conn import PEER_ERRORS, FramedStream, handshake
from p2pnode.net.node import Node
from p2pnode.net.peers import short
from p2pnode.testing.faults.peers import invalid_order, seen_orders
from p2pnode.wire import codec
from p2pnode.wire.messages import (
    Certificate,
    GetPeers,
    Gossip,
    IHave,
    IWant,
    Message,
    Order,
    Ping,
    Pong,
    Refuse,
    SyncHeads,
    SyncSummary,
    Vote,
    decode,
)
from p2pnode.wire.types import NodeId

TICK_S = 0.05
STATS_S = 5.0
HANDSHAKE_S = 5.0
REDIAL_S = 0.2  # pause before a cut connection is dialled again with a fresh key
MAX_IDENTITIES = 400  # fresh keys per connection slot over the node's life

BAD_PROOF_RATE = 100  # orders per second per connection
IHAVE_RATE = 100  # IHAVE messages (1024 ids each) per second per connection
IWANT_RATE = 50  # IWANT messages per second per connection
SYNC_RATE = 50  # SyncHeads and SyncSummary, each, per second per connection
NEVER_READ_RATE = 2000  # GetPeers requests per second per connection
FUTURE_RATE = 50  # orders per second per connection
FUTURE_AHEAD = 40  # seqs ahead of the account's next: the window (16 by default) and beyond it
FUTURE_VARIANTS = 8  # different transfers per future seq
SYBIL_PEERS = 40  # connections per victim
VOTE_RATE = 200  # votes per second per connection
HELD_IDS = 1024  # ids remembered for iwant_repeat (one full IWANT)

# Seconds from node start to the first misbehaviour: long enough for a scenario's cluster to form
# and its load to have ~8-10 s of baseline (the cluster is ready a few seconds after its nodes start).
START_S: dict[str, float] = {
    "bad_proofs_fresh_keys": 14.0,
    "ihave_flood": 14.0,
    "iwant_repeat": 14.0,
    "sync_empty": 14.0,
    "never_read": 14.0,
    "future_seqs": 14.0,
    "sybil_slots": 14.0,
    "vote_replay": 14.0,
}


@dataclass(slots=True)
class Stats:
    """What the attack cost and drew out, over every attack connection."""

    sent: int = 0
    bytes_out: int = 0
    bytes_in: int = 0  # of closed connections; open ones are added when logged
    identities: int = 0
    open: set[Link] = field(default_factory=set)


class Link:
    """One attack connection, handshaken as ``key``: sends are serialized and counted."""

    def __init__(self, conn: FramedStream, key: NodeKey, addr: str, stats: Stats) -> None:
        self.conn = conn
        self.key = key
        self.addr = addr
        self.stats = stats
        self.ids: deque[bytes] = deque(maxlen=HELD_IDS)  # ids the victim pushed or announced to us
        self._lock = trio.Lock()

    async def send(self, msgs: list[Message]) -> None:
        """Send ``msgs`` in one write; raises what the stream raises when the victim is gone."""
        if not msgs:
            return
        data = b"".join(codec.frame(m.encode()) for m in msgs)
        async with self._lock:
            await self.conn.send_raw(data)
        self.stats.sent += len(msgs)
        self.stats.bytes_out += len(data)

    async def read(self) -> None:
        """Answer pings, remember what the victim holds; return when the victim refuses or closes."""
        while True:
            msg = await self.conn.receive()
            if isinstance(msg, Ping):
                await self.send([Pong(nonce=msg.nonce)])
            elif isinstance(msg, Refuse):
                return
            elif isinstance(msg, Gossip):
                self.ids.append(bytes(message_id(msg.data)))
            elif isinstance(msg, IHave):
                self.ids.extend(msg.ids)


Behaviour = Callable[["Attack", Link], Awaitable[None]]


class Attack:
    """One role's attack from ``node``: sessions per victim, the stats logger, the role's state."""

    def __init__(self, node: Node, role: str, rng: random.Random) -> None:
        self.node = node
        self.role = role
        self.rng = rng
        self.stats = Stats()
        self.own = SpendingKey.generate()  # an unknown account, for invalid orders before any is seen
        self.future: list[Order] = []  # future_seqs: the orders of the attacker's own account
        self.votes: dict[bytes, float] = {}  # vote_replay: encoded vote -> when this node first had it

    def victims(self) -> list[str]:
        own = self.node.dialer.own_addr
        addrs = {a for a in self.node.known if a and a != own}
        addrs |= {p.addr for p in self.node.peers.values() if p.addr and p.addr != own}
        return sorted(addrs)

    async def stats_loop(self) -> None:
        while True:
            await trio.sleep(STATS_S)
            s = self.stats
            self.node.log.warning(
                "byzantine_stats",
                role=self.role,
                sent=s.sent,
                bytes_out=s.bytes_out,
                bytes_in=s.bytes_in + sum(link.conn.bytes_in for link in s.open),
                identities=s.identities,
                connections=len(s.open),
            )

    async def slots(self, behaviour: Behaviour, per_victim: int = 1, *, reads: bool = True) -> None:
        """Run ``per_victim`` connection slots to every victim, each re-dialled with a fresh key when
        cut (at most ``MAX_IDENTITIES`` keys per slot). Victims learnt later get slots too."""
        started: set[str] = set()
        async with trio.open_nursery() as nursery:
            while True:
                for addr in self.victims():
                    if addr not in started:
                        started.add(addr)
                        for _ in range(per_victim):
                            nursery.start_soon(self._slot, addr, behaviour, reads)
                await trio.sleep(1.0)

    async def _slot(self, addr: str, behaviour: Behaviour, reads: bool) -> None:
        for _ in range(MAX_IDENTITIES):
            await self._session(addr, behaviour, reads)
            await trio.sleep(REDIAL_S * (0.5 + self.rng.random()))

    async def _connect(self, host: str, port: int, small_buffer: bool) -> trio.abc.Stream:
        """A stream to the victim; with ``small_buffer`` over a socket whose receive buffer is 4 KiB
        (set before connecting, so the window the victim sees stays small), when the address is IP."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            small_buffer = False
        if not small_buffer:
            return await self.node.transport.connect(host, port)
        return await connect_small_buffer(host, port)

    async def _session(self, addr: str, behaviour: Behaviour, reads: bool) -> None:
        host, port = parse_hostport(addr)
        key = NodeKey.generate()
        try:
            stream = await self._connect(host, port, small_buffer=not reads)
        except OSError:
            return
        conn = FramedStream(stream, self.node.cfg.limits.max_frame)
        link = Link(conn, key, addr, self.stats)
        try:
            with trio.fail_after(HANDSHAKE_S):
                await handshake(conn, key, self.node.genesis.chain_id, 0, "full")
            self.stats.identities += 1
            self.node.log.warning(
                "byzantine_identity",
                role=self.role,
                node_id=short(key.public),
                target=addr,
                local_addr=_local_addr(stream),
            )
            self.stats.open.add(link)
            async with trio.open_nursery() as nursery:
                if reads:
                    nursery.start_soon(_until_done, link.read(), nursery.cancel_scope)
                nursery.start_soon(_until_done, behaviour(self, link), nursery.cancel_scope)
        except (trio.TooSlowError, HandshakeError, DecodeError):
            pass
        finally:
            self.stats.open.discard(link)
            self.stats.bytes_in += conn.bytes_in
            await conn.aclose()


async def _until_done(work: Awaitable[None], scope: trio.CancelScope) -> None:
    """Run ``work``; when it returns or the connection fails, end the whole session."""
    try:
        await work
    except (*PEER_ERRORS, DecodeError):
        pass
    finally:
        scope.cancel()


def _local_addr(stream: trio.abc.Stream) -> str:
    """``host:port`` of our end of ``stream`` (what the victim logs as ``addr``), or ""."""
    inner: object = stream
    for _ in range(4):
        sock = getattr(inner, "socket", None)
        if sock is not None:
            try:
                host, port = sock.getsockname()[:2]
            except OSError:
                return ""
            return f"{host}:{port}"
        inner = getattr(inner, "inner", None) or getattr(inner, "stream", None)
        if inner is None:
            break
    return ""


async def _ticks(rate: int, link: Link, build: Callable[[int], list[Message]]) -> None:
    """Send ``build(n)`` every tick, ``rate`` messages per second in all, until the session ends."""
    n = max(1, round(rate * TICK_S))
    while True:
        await link.send(build(n))
        await trio.sleep(TICK_S)


# -- the roles ----------------------------------------------------------------------------------------
async def _bad_proofs(attack: Attack, link: Link) -> None:
    node, rng = attack.node, attack.rng

    def build(n: int) -> list[Message]:
        seen = seen_orders(node)
        return [Gossip(data=invalid_order(node, rng, seen, attack.own).encode(), hops=1) for _ in range(n)]

    await _ticks(BAD_PROOF_RATE, link, build)


async def _ihave_flood(attack: Attack, link: Link) -> None:
    rng = attack.rng
    await _ticks(IHAVE_RATE, link, lambda n: [IHave(ids=tuple(rng.randbytes(32) for _ in range(1024)))] * n)


async def _iwant_repeat(attack: Attack, link: Link) -> None:
    def build(n: int) -> list[Message]:
        ids = tuple(link.ids)
        return [IWant(ids=ids)] * n if ids else []

    await _ticks(IWANT_RATE, link, build)


async def _sync_empty(attack: Attack, link: Link) -> None:
    rng = attack.rng

    def build(n: int) -> list[Message]:
        out: list[Message] = []
        for _ in range(n):
            out.append(SyncHeads(heads=(), reply=False))
            out.append(SyncSummary(root=rng.randbytes(32), applied=0))
        return out

    await _ticks(SYNC_RATE, link, build)


async def _never_read(attack: Attack, link: Link) -> None:
    await _ticks(NEVER_READ_RATE, link, lambda n: [GetPeers()] * n)


async def _future_seqs(attack: Attack, link: Link) -> None:
    orders = attack.future
    if not orders:
        await trio.sleep_forever()  # no funded account: nothing to send (logged at start)
    at = attack.rng.randrange(len(orders))

    def build(n: int) -> list[Message]:
        nonlocal at
        out: list[Message] = []
        for _ in range(n):
            out.append(Gossip(data=orders[at % len(orders)].encode(), hops=1))
            at += 1
        return out

    await _ticks(FUTURE_RATE, link, build)


async def _sybil(attack: Attack, link: Link) -> None:
    await trio.sleep_forever()  # hold the slot; the reader answers pings


async def _vote_replay(attack: Attack, link: Link) -> None:
    node = attack.node
    ttl = float(node.cfg.gossip.seen_ttl_s)
    at = 0

    def build(n: int) -> list[Message]:
        nonlocal at
        horizon = trio.current_time() - ttl - 1.0
        old = [v for v, seen in attack.votes.items() if seen < horizon]
        if not old:
            return []
        out: list[Message] = []
        for _ in range(n):
            out.append(Gossip(data=old[at % len(old)], hops=1))
            at += 1
        return out

    await _ticks(VOTE_RATE, link, build)


async def _collect_votes(attack: Attack) -> None:
    """vote_replay: every vote of every certificate the node applied, with when it first had it."""
    node = attack.node
    done = 0
    while True:
        certs = list(node.core.certs.values())
        now = trio.current_time()
        for raw in certs[done:]:
            try:
                cert = decode(raw, Certificate)
            except P2PNodeError:
                continue
            digest = statement_digest(cert.order)
            for validator, signature, _, path in cert.signatures:
                if path:
                    continue  # signed in a batch of several: the vote itself is not rebuilt from this
                vote = Vote(validator=NodeId(validator), digests=(digest,), signature=signature)
                attack.votes.setdefault(vote.encode(), now)
        done = len(certs)
        await trio.sleep(1.0)


# -- future_seqs: the cluster's last account -----------------------------------------------------
def _donor(node: Node) -> SpendingKey | None:
    """The last account file of the cluster directory the node's key file is in, if any."""
    accounts = Path(node.cfg.node.key_file).resolve().parent.parent / "accounts"
    files = sorted(accounts.glob("account-*.json"), key=lambda p: int(p.stem.rpartition("-")[2] or 0))
    if not files:
        return None
    try:
        return load_account(files[-1])
    except LocalError:
        return None


def _future_orders(node: Node, key: SpendingKey, rng: random.Random) -> list[Order]:
    """``FUTURE_VARIANTS`` valid transfers for each seq next+1 .. next+``FUTURE_AHEAD`` of ``key``'s
    account (its next seq is never sent: they can only be held)."""
    sender = address_of(key.public)
    nxt = node.core.ledger.next_seq(sender) if sender in node.core.ledger.accounts else 0
    out = []
    for seq in range(nxt + 1, nxt + 1 + FUTURE_AHEAD):
        for _ in range(FUTURE_VARIANTS):
            out.append(make_order(key, node.genesis.chain_id, rng.randbytes(20), rng.randrange(1, 100), seq))
    rng.shuffle(out)
    return out


async def connect_small_buffer(host: str, port: int, rcvbuf: int = 4096) -> trio.SocketStream:
    """A TCP stream to ``host:port`` (an IPv4 address) whose receive buffer is ``rcvbuf`` bytes, set
    before connecting so that the window the other side sees stays small: a reader that never reads
    fills it at once. Raises ``OSError`` if nothing answers (the socket is closed then)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return trio.SocketStream(sock)


# -- the service --------------------------------------------------------------------------------------
async def _run(attack: Attack) -> None:
    role = attack.role
    async with trio.open_nursery() as nursery:
        if role == "vote_replay":
            nursery.start_soon(_collect_votes, attack)
        funded: SpendingKey | None = None
        if role == "future_seqs":
            # The cluster's last account, which a scenario keeps out of its load (ACCOUNT_ROLES).
            funded = _donor(attack.node)
            if funded is None:
                attack.node.log.warning("byzantine_setup_failed", role=role, reason="no account file")
        await trio.sleep_until(attack.node.started_at + START_S[role])
        if funded is not None:
            attack.future = _future_orders(attack.node, funded, attack.rng)
        attack.node.log.warning("byzantine_behaviour_started", role=role, victims=attack.victims())
        nursery.start_soon(attack.stats_loop)
        behaviour, per_victim, reads = ROLES[role]
        await attack.slots(behaviour, per_victim, reads=reads)


def attacker_service(role: str) -> Callable[[Node], Awaitable[None]]:
    """The node service that plays attacker ``role``; KeyError for a role not of this module."""
    ROLES[role]

    async def run(node: Node) -> None:
        await _run(Attack(node, role, random.Random(os.urandom(8))))

    return run


# role -> (behaviour per connection, connections per victim, whether the connection is read)
ROLES: dict[str, tuple[Behaviour, int, bool]] = {
    "bad_proofs_fresh_keys": (_bad_proofs, 1, True),
    "ihave_flood": (_ihave_flood, 1, True),
    "iwant_repeat": (_iwant_repeat, 1, True),
    "sync_empty": (_sync_empty, 1, True),
    "never_read": (_never_read, 1, False),
    "future_seqs": (_future_seqs, 1, True),
    "sybil_slots": (_sybil, SYBIL_PEERS, True),
    "vote_replay": (_vote_replay, 1, True),
}
ATTACKER_ROLES = tuple(ROLES)

assert set(START_S) == set(ROLES)

__all__ = ["ATTACKER_ROLES", "Attack", "Link", "Stats", "attacker_service"]
