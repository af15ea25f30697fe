"""The dialer (keep ``peers.target`` outbound connections, with jittered exponential backoff per
address) and peer exchange (ask for addresses while below target; tell every peer our peer set when it
changed).

Outbound slots are this node's own: the dialer counts only connections it dialed (``direction ==
"out"``) against ``min(peers.target, peers.max_outbound)``, so inbound peers, however many, never stop
it dialing, and never take those slots. A validator also dials every committee member of the genesis
it is not connected to, whatever its target (bounded by the committee's size).

Resource handling: both are services of the node's nursery and run until cancelled; each dial is a
task of that nursery too, bounded by ``peers.handshake_timeout_s`` until its connection is up, and
then lives as long as the connection. Error handling: a failed dial is logged (``dial_failed`` at
debug, ``handshake_refused``) and only delays the next attempt at that address.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import trio

from p2pnode.config import NodeConfig, parse_hostport
from p2pnode.errors import HandshakeError
from p2pnode.net.conn import PEER_ERRORS, FramedStream
from p2pnode.net.peers import AddressBook, PeerSet
from p2pnode.net.transport import Transport
from p2pnode.wire.messages import GetPeers, Peers
from p2pnode.wire.types import NodeId


class Dialer:
    def __init__(
        self,
        *,
        cfg: NodeConfig,
        transport: Transport,
        peers: PeerSet,
        book: AddressBook,
        rng: random.Random,
        log: Any,
        counters: dict[str, int],
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.peers = peers
        self.book = book
        self.rng = rng
        self.log = log
        self.counters = counters
        self.own_addr = ""  # our listen address, never dialed; set once the node listens
        self._backoff: dict[str, tuple[float, float]] = {}  # addr -> (next attempt, current delay)
        self._dialing: set[str] = set()
        self.committee_dials = self.peers.role == "validator"

    def _dialable(self, addr: str, nid: NodeId | None, connected: set[NodeId], now: float) -> bool:
        return (
            addr not in self._dialing
            and nid not in connected
            and nid != self.peers.node_id
            and not (nid is not None and self.peers.is_banned(nid))
            and addr != self.own_addr
            and self._backoff.get(addr, (0.0, 0.0))[0] <= now
        )

    def forget_failures(self, addrs: Iterable[str] | None = None) -> None:
        """Dial these addresses (all, if None) at the next round, whatever failed before."""
        if addrs is None:
            self._backoff.clear()
        else:
            for a in addrs:
                self._backoff.pop(a, None)

    async def run(self) -> None:
        nursery_scope: trio.Nursery
        async with trio.open_nursery() as nursery_scope:
            while True:
                now = trio.current_time()
                connected = set(self.peers)
                if self.committee_dials:
                    # Every committee member we know an address of and are not connected to, at once.
                    dialing = {self.book.known.get(a) for a in self._dialing}
                    for addr, nid in list(self.book.known.items()):
                        if (
                            nid is not None
                            and self.peers.is_committee(nid)
                            and nid not in dialing
                            and self._dialable(addr, nid, connected, now)
                        ):
                            dialing.add(nid)
                            self._dialing.add(addr)
                            nursery_scope.start_soon(self._dial, addr)
                p = self.cfg.peers
                want = min(p.target, p.max_outbound) - self.peers.count("out") - len(self._dialing)
                if want > 0:
                    known = self.book.known.items()
                    candidates = [a for a, nid in known if self._dialable(a, nid, connected, now)]
                    self.rng.shuffle(candidates)
                    for addr in candidates[:want]:
                        self._dialing.add(addr)
                        nursery_scope.start_soon(self._dial, addr)
                await trio.sleep(self.cfg.peers.dial_backoff_min_ms / 1000)

    async def _dial(self, addr: str) -> None:
        host, port = parse_hostport(addr)
        try:
            with trio.fail_after(self.cfg.peers.handshake_timeout_s):
                stream = await self.transport.connect(host, port)
                conn = FramedStream(stream, self.cfg.limits.max_frame)
                try:
                    hello = await self.peers.handshake(conn)
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
        self.book.note(addr, hello.node_id)
        await self.peers.run(conn, hello, "out", addr)

    def _note_failure(self, addr: str) -> None:
        p = self.cfg.peers
        _, delay = self._backoff.get(addr, (0.0, p.dial_backoff_min_ms / 1000))
        jittered = delay * (0.5 + self.rng.random())
        self._backoff[addr] = (trio.current_time() + jittered, min(delay * 2, p.dial_backoff_max_ms / 1000))

    async def exchange(self) -> None:
        """Peer exchange: ask for more peers while below target, and tell every peer our peer set
        whenever it changed (gossip uses neighbours' peer sets to skip pushes that would duplicate)."""
        told: frozenset[NodeId] = frozenset()
        while True:
            await trio.sleep(self.cfg.peers.exchange_interval_s)
            ids = self.peers.ids()
            if ids and self.peers.count("out") < min(self.cfg.peers.target, self.cfg.peers.max_outbound):
                self.peers.send(self.rng.choice(ids), GetPeers())
            current = frozenset(ids)
            if current != told:
                told = current
                for nid in current:
                    self.peers.send(nid, Peers(peers=self.peers.peer_list(exclude=nid)))


__all__ = ["Dialer"]
