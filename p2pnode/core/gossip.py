"""Gossip routing rules: eager push to a few peers, lazy announce (IHAVE/IWANT) to the others.

In the spirit of gossipsub and Plumtree:

- A message id is the hash of its bytes (:func:`p2pnode.core.payments.message_id`).
- ``seen`` is a bounded, expiring set of ids. A seen id is a duplicate and is never forwarded again.
- Nothing is forwarded before the caller validated it (``receive`` only classifies; ``forward`` is a
  separate call made after validation).
- A validated message is pushed in full to ``eager_fanout`` random peers that are not known to have
  it (``origin_fanout`` when this node originates it, as gossipsub's flood publishing does, so that
  the first hop is wide), and announced by id to up to ``lazy_fanout`` others at the next heartbeat.
  Push alone costs about ``eager_fanout - 1`` duplicate copies per node; the lazy announcements to
  everyone else give full coverage whatever the topology. A peer that hears of
  an id it lacks asks one announcer with IWANT and, if nothing arrives within ``iwant_timeout``, asks
  the next announcer.
- Payloads are cached (``mcache``) for as long as their ids are announced, to answer IWANT.
- Full pushes go to *proven* peers first (``prove``: committee members, and peers that delivered a
  useful payload), as gossipsub's mesh admits peers by score: forty fresh keys connected to a node
  would otherwise draw most of its full pushes, and honest payloads would reach honest peers only by
  the slower IHAVE/IWANT round trip. Lazy announcements go to every proven peer and to at most
  ``lazy_unproven`` others (as gossipsub gossips to D_lazy peers, not to all).

Flood protection (gossipsub v1.1's rules, kept per peer; all bounded, time passed in):

- IHAVE: at most ``max_ihave`` announced ids are taken from one peer per heartbeat; the rest are
  dropped unread (``ihave_dropped``). Of the ids taken, those we ask for (IWANT) are promises: an id
  that nobody delivered within ``iwant_followup`` of the first IWANT is a broken promise of every peer
  we asked for it (``take_broken_promises``; the node penalizes them, as gossipsub's behaviour penalty
  P7 does, with its follow-up time of 3 s). ``iwant_timeout`` only decides when to ask the next
  announcer: a reply that comes later than that (a long link, a busy peer or a busy receiver) is
  still a kept promise.
- IWANT: each id is served at most once per peer while it is cached (a peer that asks again gets
  nothing: no amplification by repeated IWANTs), and at most ``max_ihave`` ids per peer per heartbeat.
- Ids asked for but not yet delivered are bounded (``WANTED_LIMIT``).

Dissemination by role (``docs/gossip.md`` has the whole table and the coverage argument). With a
committee given, each payload is routed by its kind:

- ``VOTE``: among validators only. Its signer sends it to every committee member it is connected to;
  a relay forwards it to the committee peers that do not hold it and are not known to be connected
  to the signer (peer exchange). Full nodes never get one, unless a *bridge* is needed: a validator
  that lacks a direct connection to some committee member also pushes its votes (and relays) to a
  few non-committee peers, and a full node that receives a vote forwards it to its committee peers
  (or, having none, to a few others). Coverage then holds over any connected graph.
- ``ORDER``: towards validators. A node sends an order to every committee peer it has (a node with
  none, or a validator lacking a committee link, also to a few other peers, which do the same); a
  relay skips the committee peers its source is known to be connected to. Never announced lazily.
- ``CERT``: to full nodes. Validators and full nodes push certificates eagerly to ``eager_fanout``
  non-committee peers and announce them to the other non-committee peers; committee peers assemble
  their own from the votes and get an announcement only when this node holds no vote of theirs for
  the payment (``publish(..., skip=)``): a validator that did not vote may lack the votes.
  Announcements are filtered again when flushed: a peer that delivered the id meanwhile gets nothing.

Without a committee (``committee=frozenset()``, kind ``ANY``) every payload is flooded as described
above; unit tests of the flood rules use that mode.

The router is sans-I/O: handlers return ``Send`` effects and take ``now`` as an argument.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

from p2pnode.core.effects import Send
from p2pnode.core.payments import message_id
from p2pnode.wire.messages import Gossip, IHave, IWant
from p2pnode.wire.types import MsgId, NodeId

ANY, ORDER, VOTE, CERT = "any", "order", "vote", "cert"  # payload kinds (routing by role)
KINDS = (ANY, ORDER, VOTE, CERT)

MCACHE_TTL = 5.0  # seconds a payload stays available for IWANT
HAS_LIMIT = 50_000  # ids for which we track which peers already have them
WANTED_LIMIT = 50_000  # ids asked for (IWANT) and not delivered yet


@dataclass(frozen=True, slots=True)
class GossipParams:
    eager_fanout: int = 2
    origin_fanout: int = 8
    lazy_fanout: int = 64
    lazy_unproven: int = 8  # of the lazy announcements, at most this many to peers not proven
    seen_cache_size: int = 200_000
    seen_ttl: float = 300.0
    iwant_timeout: float = 0.4
    iwant_followup: float = 3.0
    max_ihave: int = 512


@dataclass(slots=True)
class GossipStats:
    received: int = 0
    duplicate: int = 0
    forwarded: int = 0
    published: int = 0
    invalid: int = 0
    ihave_sent: int = 0
    iwant_sent: int = 0
    iwant_served: int = 0
    ihave_dropped: int = 0
    iwant_refused: int = 0
    promises_broken: int = 0
    repeated: int = 0  # duplicates from a peer that had delivered the same payload before

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class GossipRouter:
    """Per-node gossip state. Bounded: ``seen`` by size and age, ``mcache`` by age, IWANT by count."""

    def __init__(
        self,
        params: GossipParams,
        rng: random.Random | None = None,
        *,
        committee: frozenset[NodeId] = frozenset(),
        node_id: NodeId | None = None,
    ) -> None:
        self.params = params
        self.rng = rng or random.Random()
        self.committee = committee
        self.node_id = node_id
        self.member = node_id is not None and node_id in committee
        self.kinds_sent: dict[str, int] = dict.fromkeys(KINDS, 0)  # full pushes by kind
        self.kinds_received: dict[str, int] = dict.fromkeys(KINDS, 0)  # first deliveries by kind
        self.peers: list[NodeId] = []
        self._peer_set: set[NodeId] = set()
        self._proven: set[NodeId] = set()  # eager pushes go to these first (see ``prove``)
        self.stats = GossipStats()
        self._seen: OrderedDict[MsgId, float] = OrderedDict()
        self._mcache: OrderedDict[MsgId, tuple[float, bytes, int]] = OrderedDict()
        self._has: OrderedDict[MsgId, set[NodeId]] = OrderedDict()
        self._delivered: OrderedDict[MsgId, set[NodeId]] = OrderedDict()  # who sent the payload
        self._pending_ihave: dict[NodeId, list[MsgId]] = {}
        # id -> (when to ask the next announcer, announcers still to ask)
        self._wanted: dict[MsgId, tuple[float, list[NodeId]]] = {}
        self._neighbors: dict[NodeId, frozenset[NodeId]] = {}
        self._ihave_taken: dict[NodeId, int] = {}  # ids taken from IHAVEs this heartbeat, per peer
        self._iwant_served: dict[NodeId, int] = {}  # ids served to IWANTs this heartbeat, per peer
        self._served: dict[MsgId, set[NodeId]] = {}  # cached id -> peers it was served to by IWANT
        self._broken: dict[NodeId, int] = {}  # broken IHAVE promises since the last take
        # id -> (when the promise is judged, the peers asked), in order of the first IWANT
        self._promises: dict[MsgId, tuple[float, list[NodeId]]] = {}

    # -- membership ---------------------------------------------------------------------------------
    def add_peer(self, peer: NodeId) -> None:
        if peer not in self._peer_set:
            self.peers.append(peer)
            self._peer_set.add(peer)

    def prove(self, peer: NodeId) -> None:
        """``peer`` is a committee member or has delivered something useful: it is preferred for
        eager pushes. Peers that have done nothing yet (a newcomer, or a flock of fresh keys) get a
        full push only when too few proven peers are left; they still get every id announced."""
        if peer in self.peers:
            self._proven.add(peer)

    def remove_peer(self, peer: NodeId) -> None:
        self._proven.discard(peer)
        if peer in self._peer_set:
            self.peers.remove(peer)
            self._peer_set.discard(peer)
        self._pending_ihave.pop(peer, None)
        self._neighbors.pop(peer, None)
        self._ihave_taken.pop(peer, None)
        self._iwant_served.pop(peer, None)

    def set_neighbors(self, peer: NodeId, neighbors: frozenset[NodeId]) -> None:
        """What ``peer`` says its own peers are (peer exchange). When ``peer`` originates a message
        and has at most ``origin_fanout`` peers, it pushed the message to all of them, so relaying
        it eagerly to those peers would only make duplicates: they get an announcement instead."""
        self._neighbors[peer] = neighbors

    # -- receiving ----------------------------------------------------------------------------------
    def seen(self, mid: MsgId) -> bool:
        return mid in self._seen

    def cached(self, mid: MsgId) -> bool:
        """Is ``mid`` in the message cache? Only validated payloads are (published or relayed)."""
        return mid in self._mcache

    def receive(self, now: float, peer: NodeId | None, data: bytes) -> tuple[MsgId, bool]:
        """Classify an incoming payload. Returns (id, is_new); a new id is marked seen at once."""
        mid, new, _ = self.receive_from(now, peer, data)
        return mid, new

    def receive_from(self, now: float, peer: NodeId | None, data: bytes) -> tuple[MsgId, bool, bool]:
        """:meth:`receive`, and whether ``peer`` had sent this very payload before (an honest peer
        sends each payload at most once on a connection: a repeat is useless traffic)."""
        mid = message_id(data)
        self.stats.received += 1
        repeat = False
        if peer is not None:
            self._note_has(mid, peer)
            senders = self._delivered.get(mid)
            if senders is None:
                senders = self._delivered[mid] = set()
                while len(self._delivered) > HAS_LIMIT:
                    self._delivered.popitem(last=False)
            repeat = peer in senders
            senders.add(peer)
        if mid in self._seen:
            self.stats.duplicate += 1
            self.stats.repeated += repeat
            return mid, False, repeat
        self._mark_seen(now, mid)
        return mid, True, False

    def _note_has(self, mid: MsgId, peer: NodeId) -> None:
        """Remember that ``peer`` has ``mid`` so it is not pushed to it (bounded, oldest dropped)."""
        peers = self._has.get(mid)
        if peers is None:
            peers = self._has[mid] = set()
            while len(self._has) > HAS_LIMIT:
                self._has.popitem(last=False)
        peers.add(peer)

    def mark_invalid(self) -> None:
        self.stats.invalid += 1

    def forget(self, mid: MsgId) -> None:
        """Un-see ``mid`` (its payload failed validation) so that a valid payload with the same id
        can still arrive; used for ids that are not a hash of all the bytes (certificates)."""
        self._seen.pop(mid, None)
        self._mcache.pop(mid, None)

    def _mark_seen(self, now: float, mid: MsgId) -> None:
        """Seen, however it came (gossip, published here, anti-entropy): no longer wanted, and what
        was asked for it is a kept promise (a copy the asked peer still sends is a duplicate)."""
        self._seen[mid] = now
        self._wanted.pop(mid, None)
        self._promises.pop(mid, None)
        while len(self._seen) > self.params.seen_cache_size:
            self._seen.popitem(last=False)

    # -- sending ------------------------------------------------------------------------------------
    def publish(
        self,
        now: float,
        data: bytes,
        kind: str = ANY,
        skip: frozenset[NodeId] = frozenset(),
        first: NodeId | None = None,
    ) -> list[Send]:
        """Originate a payload (already validated by the caller). ``skip``, for a certificate: the
        committee peers whose vote this node holds (they were sent the same votes and assemble it
        themselves), which get no announcement. ``first``, for a certificate: the peer that gave this
        validator the order at its first hop (its client waits there), which takes one of the
        ``eager_fanout`` full pushes if it is a non-committee peer not known to hold it."""
        mid = message_id(data)
        if mid not in self._seen:
            self._mark_seen(now, mid)
        self.stats.published += 1
        return self._route(now, mid, data, 1, kind, None, origin=True, skip=skip, first=first)

    def forward(
        self,
        now: float,
        mid: MsgId,
        data: bytes,
        hops: int,
        source: NodeId | None = None,
        kind: str = ANY,
    ) -> list[Send]:
        """Relay a validated payload that arrived from ``source`` having travelled ``hops`` hops (the
        origin sends 1)."""
        self.stats.forwarded += 1
        return self._route(now, mid, data, min(hops + 1, 255), kind, source)

    def bridging(self) -> bool:
        """Is this validator missing a direct connection to some committee member? Its votes and
        orders then also go to non-committee peers, which carry them to the committee."""
        if not self.member:
            return False
        return any(v != self.node_id and v not in self._peer_set for v in self.committee)

    def _route(
        self,
        now: float,
        mid: MsgId,
        data: bytes,
        hops: int,
        kind: str,
        source: NodeId | None,
        *,
        origin: bool = False,
        skip: frozenset[NodeId] = frozenset(),
        first: NodeId | None = None,
    ) -> list[Send]:
        """Pick the eager and lazy targets of one payload by its kind (see the module docstring)."""
        self._mcache[mid] = (now, data, hops)
        p = self.params
        if kind == ANY or not self.committee:
            covered: frozenset[NodeId] = frozenset()
            if not origin and hops == 2 and source is not None:
                theirs = self._neighbors.get(source)
                if theirs is not None and len(theirs) + 1 <= p.origin_fanout:
                    covered = theirs  # the origin flooded them already
            fanout = p.origin_fanout if origin else p.eager_fanout
            return self._push(mid, data, hops, self._fresh(mid), fanout, covered)
        fresh = self._fresh(mid)
        members = [q for q in fresh if q in self.committee]
        others = [q for q in fresh if q not in self.committee]
        if kind == CERT:
            out = self._push(mid, data, hops, others, p.eager_fanout, first=first)
            if self.member:
                for q in members:
                    if q not in skip:
                        self._pending_ihave.setdefault(q, []).append(mid)
            self.kinds_sent[kind] += len(out)
            return out
        # ORDER and VOTE: to every committee peer that does not hold it and did not get it from the
        # source (every node sends these to all its committee peers but those covered); a bridge
        # also to a few other peers.
        via: frozenset[NodeId] = frozenset()
        if not origin and source is not None:
            via = self._neighbors.get(source, frozenset())
        targets = [q for q in members if q not in via]
        if self.member:
            bridge = self.bridging()
        else:
            bridge = not any(q in self.committee for q in self.peers)  # no committee peer to hand it to
        if bridge:
            self.rng.shuffle(others)
            others.sort(key=lambda q: q not in self._proven)
            targets += others[: p.origin_fanout if origin else p.eager_fanout]
        self.kinds_sent[kind] += len(targets)
        msg = Gossip(data=data, hops=hops)
        return [Send(q, msg) for q in targets]

    def _fresh(self, mid: MsgId) -> list[NodeId]:
        has = self._has.get(mid, set())
        return [q for q in self.peers if q not in has]

    def _push(
        self,
        mid: MsgId,
        data: bytes,
        hops: int,
        candidates: list[NodeId],
        fanout: int,
        covered: frozenset[NodeId] = frozenset(),
        first: NodeId | None = None,
    ) -> list[Send]:
        candidates = list(candidates)
        self.rng.shuffle(candidates)
        # Stable sorts keep the shuffle within each group: ``first`` (if a candidate) before the rest,
        # uncovered before covered, and proven peers before those that have done nothing yet (fresh
        # keys cannot draw the full pushes away).
        candidates.sort(key=lambda p: (p != first, p in covered, p not in self._proven))
        eager = [p for p in candidates[:fanout] if p not in covered]
        rest = [p for p in candidates if p not in eager]
        # Every proven peer hears of it; of the others (newcomers, or a flock of fresh keys), a random
        # few: announcing to forty idle strangers every heartbeat costs more than the payment itself.
        unproven = [p for p in rest if p not in self._proven][: self.params.lazy_unproven]
        lazy = ([p for p in rest if p in self._proven] + unproven)[: self.params.lazy_fanout]
        for p in lazy:
            self._pending_ihave.setdefault(p, []).append(mid)
        msg = Gossip(data=data, hops=hops)
        return [Send(p, msg) for p in eager]

    def note_seen(self, now: float, data: bytes) -> MsgId:
        """A payload this node took in some other way (a certificate from anti-entropy): a gossiped
        copy of it is then a duplicate, dropped before it is decoded."""
        mid = message_id(data)
        if mid not in self._seen:
            self._mark_seen(now, mid)
        return mid

    def note_has(self, mid: MsgId, peer: NodeId) -> None:
        """``peer`` is known to hold ``mid`` (it told us so some other way): no push, no announcement."""
        self._note_has(mid, peer)

    # -- lazy path ----------------------------------------------------------------------------------
    def on_ihave(self, now: float, peer: NodeId, ids: tuple[bytes, ...]) -> list[Send]:
        taken = self._ihave_taken.get(peer, 0)
        budget = max(0, self.params.max_ihave - taken)
        if len(ids) > budget:
            self.stats.ihave_dropped += len(ids) - budget
        ids = ids[:budget]
        self._ihave_taken[peer] = taken + len(ids)
        want: list[bytes] = []
        for raw in ids:
            mid = MsgId(raw)
            self._note_has(mid, peer)
            if mid in self._seen:
                continue
            entry = self._wanted.get(mid)
            if entry is None:
                if len(self._wanted) >= WANTED_LIMIT:
                    self.stats.ihave_dropped += 1
                    continue
                self._wanted[mid] = (now + self.params.iwant_timeout, [])
                self._promise(now, mid, peer)
                want.append(mid)
            elif peer not in entry[1] and len(entry[1]) < 8:
                entry[1].append(peer)
        if not want:
            return []
        self.stats.iwant_sent += 1
        return [Send(peer, IWant(ids=tuple(want)))]

    def on_iwant(self, now: float, peer: NodeId, ids: tuple[bytes, ...]) -> list[Send]:
        out: list[Send] = []
        served = self._iwant_served.get(peer, 0)
        for raw in ids[: self.params.max_ihave]:
            if served >= self.params.max_ihave:
                break
            mid = MsgId(raw)
            hit = self._mcache.get(mid)
            if hit is None:
                continue
            peers = self._served.setdefault(mid, set())
            if peer in peers:
                self.stats.iwant_refused += 1  # asked again within the window: served once only
                continue
            peers.add(peer)
            served += 1
            self.stats.iwant_served += 1
            out.append(Send(peer, Gossip(data=hit[1], hops=hit[2])))
        self._iwant_served[peer] = served
        return out

    def _promise(self, now: float, mid: MsgId, peer: NodeId) -> None:
        entry = self._promises.get(mid)
        if entry is None:
            if len(self._promises) >= WANTED_LIMIT:
                del self._promises[next(iter(self._promises))]
            self._promises[mid] = (now + self.params.iwant_followup, [peer])
        elif peer not in entry[1]:
            entry[1].append(peer)

    def take_broken_promises(self) -> dict[NodeId, int]:
        """Peers whose announced ids we asked for and never got since the last call, with counts."""
        broken, self._broken = self._broken, {}
        return broken

    def tick(self, now: float) -> list[Send]:
        """Heartbeat: flush announcements, re-ask for overdue IWANTs, expire caches."""
        out: list[Send] = []
        for peer, pending in self._pending_ihave.items():
            # Only ids the peer is still not known to hold (it may have delivered one meanwhile).
            ids = [m for m in dict.fromkeys(pending) if peer not in self._has.get(m, ())]
            for i in range(0, len(ids), self.params.max_ihave):
                self.stats.ihave_sent += 1
                out.append(Send(peer, IHave(ids=tuple(ids[i : i + self.params.max_ihave]))))
        self._pending_ihave = {}
        self._ihave_taken.clear()
        self._iwant_served.clear()
        retry: dict[NodeId, list[MsgId]] = {}
        for mid, (deadline, announcers) in list(self._wanted.items()):
            if deadline > now:
                continue
            if announcers:
                nxt = announcers.pop(0)
                self._wanted[mid] = (now + self.params.iwant_timeout, announcers)
                self._promise(now, mid, nxt)
                retry.setdefault(nxt, []).append(mid)
            else:
                del self._wanted[mid]  # nobody else announced it; a later IHAVE starts over
        for peer, mids in retry.items():
            self.stats.iwant_sent += 1
            out.append(Send(peer, IWant(ids=tuple(mids))))
        while self._promises:
            mid, (due, asked_peers) = next(iter(self._promises.items()))
            if due > now:
                break
            del self._promises[mid]
            for asked in asked_peers:
                self._broken[asked] = self._broken.get(asked, 0) + 1
                self.stats.promises_broken += 1
        horizon = now - MCACHE_TTL
        while self._mcache:
            mid, (t, _, _) = next(iter(self._mcache.items()))
            if t > horizon:
                break
            self._mcache.popitem(last=False)
            self._has.pop(mid, None)
            self._served.pop(mid, None)
        horizon = now - self.params.seen_ttl
        while self._seen:
            mid, t = next(iter(self._seen.items()))
            if t > horizon:
                break
            self._seen.popitem(last=False)
        return out
