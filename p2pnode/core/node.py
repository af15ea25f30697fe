"""The node's protocol state machine: everything between decoded messages in and effects out.

One ``NodeCore`` per node. Handlers are synchronous, take ``now`` and return a list of effects that
the driver performs in order (:mod:`p2pnode.core.effects`). All handlers are idempotent: the same
message delivered twice changes nothing the second time.

Gossip validation, in order (a message is forwarded only after it passes):

- Order: ``[REJECT]`` decodes, right chain, amount > 0, key matches sender, sender known;
  ``[IGNORE]`` seq already settled; ``[REJECT]`` proof verifies (verified once per digest, off-loop).
- Vote: ``[REJECT]`` validator in the committee, signature verifies.
- Certificate: ``[IGNORE]`` already certified here; ``[REJECT]`` quorum of distinct committee
  signatures that verify, then the order's checks and (per config) its proof.

Restarts: a validator persists each lock with the order's bytes. On restore it takes the order back
as pending, re-signs its vote (Ed25519 is deterministic: the same bytes as before the crash) and
pushes both again (``_repush_pending``, and to each newly connected peer); a locked validator that
sees its locked order again publishes the same vote again (``_try_vote``). Received votes are not
persisted: every vote that counts is held, as a lock, by the validator that signed it.

Blocked slots (:mod:`p2pnode.core.slots`): conflicting orders whose votes split so that none can
reach a quorum are recorded with their evidence, logged once (``slot_blocked``) and reported to
clients at once instead of a timeout.

Held state (all bounded): orders a validator cannot vote on yet (predecessor or funds missing) and
certificates that cannot apply yet (same reasons). Each apply retries what it may have unblocked;
missing predecessors are fetched with CertRequest; anti-entropy (SyncSummary → SyncHeads → CertBatch)
repairs everything else. A held order is never dropped silently: after ``held_order_s`` it expires
(``order_expired``); one a client submitted here is then refused to it (``blocked_for`` names the
expiry, so its WaitSettled is answered at once).

Proof verification budgets (:class:`p2pnode.core.budget.ProofBudget`): every order queued for
verification is charged to its source, a peer or one client connection (the driver's key for it,
passed to ``on_submit``). Orders beyond the budget are ``[IGNORE]``d from peers and refused to
clients, before any proof work. Queued work remembers its sources; when a peer is penalized or
disconnected, or a client connection cut, its queued-but-unverified orders are dropped
(``still_wanted`` says False and the driver skips them). Each source's proofs wait in a lane of
their own (``verify_lane``); a source is *trusted* once a proof it asked for verified valid, *new*
before, *suspect* after a recent invalid one (``lane_trust``); the driver takes batches in the order
of :func:`p2pnode.core.budget.choose_batch`: untrusted work in small batches, between trusted rounds.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from p2pnode.core.admission import admit, client_state_checks
from p2pnode.core.budget import CERTIFICATES, Budgets, ProofBudget, Source, Trust
from p2pnode.core.certificates import VoteBook, check_certificate
from p2pnode.core.committee import Committee
from p2pnode.core.effects import (
    Blocked,
    CloseClient,
    Disconnect,
    Effect,
    Emit,
    OrderOutcome,
    PersistApplied,
    PersistLock,
    Send,
    VerifyProofs,
)
from p2pnode.core.gossip import CERT, ORDER, VOTE, GossipParams, GossipRouter
from p2pnode.core.ledger import Ledger, LedgerError, SeqTooHigh, SeqTooLow, UnknownNote
from p2pnode.core.payments import AnyCert, AnyOrder, proof_key, statement_digest
from p2pnode.core.settlement import BATCH_OVERHEAD, CERT_OVERHEAD, DurableView, Settlement, wire_size
from p2pnode.core.shielded import ShieldedError, static_checks_shielded
from p2pnode.core.shielded import lock_keys as shielded_lock_keys
from p2pnode.core.slots import BlockedSlot, Slot, SlotWatch
from p2pnode.core.validator import OrderError, Validator, ValidatorFactory, static_checks
from p2pnode.crypto import NodeKey
from p2pnode.errors import DecodeError
from p2pnode.wire.messages import (
    CertBatch,
    Certificate,
    CertRequest,
    Gossip,
    IHave,
    IWant,
    Message,
    Order,
    ShieldedCertificate,
    ShieldedHave,
    ShieldedOrder,
    SyncHeads,
    SyncSummary,
    Vote,
    decode,
)
from p2pnode.wire.types import Address, ChainId, Digest, MsgId, NodeId

PENALTY_LIMIT = 20  # invalid messages from one peer (or client connection) before it is cut off
# A peer's invalid-message count drops by one every PENALTY_DECAY_S (a leaky bucket, as gossipsub's
# scores decay): a peer sending invalid messages faster than that is cut off after about
# PENALTY_LIMIT of them, while an honest peer's rare misses (an IHAVE id it could not deliver) never
# add up to a ban over a long-lived connection.
PENALTY_DECAY_S = 10.0
BAD_PROOF_COST = 8.0  # verification tokens an invalid proof costs its source, besides its own one
BUSY = "node busy: verification budget of this connection spent, try again"
FUTURE_CONFLICT = "another order for this future seq is pending here"
REPLAY_AFTER_S = 10.0  # a message about a payment settled here longer ago than this is a replay

REFUSALS = (OrderError, LedgerError, ShieldedError)


@dataclass(frozen=True, slots=True)
class CoreParams:
    gossip: GossipParams = GossipParams()
    pending_orders: int = 20_000
    held_certificates: int = 20_000
    sync_interval: float = 1.0
    sync_batch: int = 256
    certificate_proofs: bool = True
    future_seqs: int = 16
    held_order_s: float = 30.0
    verify_rate: float = 500.0  # proof verifications per second per source
    verify_burst: float = 1000.0
    sync_reply_factor: float = 2.0  # sync-reply bytes per byte received, for non-committee peers
    sync_credit_max: int = 1 << 20  # most sync-reply credit a peer may hold, in bytes
    sync_strikes: int = 20  # rate-limited sync requests in reserve before the peer is penalized
    useless_rate: float = 2.0  # useless-traffic points a peer gets back per second
    useless_burst: float = 100.0  # points a peer may be down before it is disconnected


@dataclass(slots=True)
class _Ctx:
    """Why a proof is being verified, and what to do once it is."""

    kind: str  # "order" | "submit" | "cert"
    peer: NodeId | None
    mid: MsgId | None
    data: bytes
    hops: int
    msg: AnyOrder | AnyCert
    source: Source = None  # whose budget paid for the verification (peer, or client connection)


def short(b: bytes | None) -> str:
    return b.hex()[:16] if b else "client"


def _label(source: Source) -> str:
    return short(source) if isinstance(source, bytes) else "client"


class NodeCore:
    def __init__(
        self,
        *,
        key: NodeKey,
        chain_id: ChainId,
        validators: Iterable[bytes],
        balances: dict[bytes, int],
        params: CoreParams = CoreParams(),
        rng: random.Random | None = None,
        validator_factory: ValidatorFactory = Validator,
        shielded: bool = False,
        signature_verify: Callable[[bytes, bytes, bytes], bool] | None = None,
        decoder: Callable[[bytes], Any] = decode,
    ) -> None:
        self.node_id = NodeId(key.public)
        # Decodes gossip payloads and synced certificates (raises DecodeError). Messages are frozen
        # values, so the simulator shares one decoding of the same bytes among all its nodes.
        self._decode = decoder
        self.shielded = shielded  # the genesis carries a verifying key for shielded proofs
        self.chain_id = chain_id
        self.params = params
        self.rng = rng or random.Random()
        self.committee = Committee.of(validators)
        self.ledger = Ledger(balances)
        self.settlement = Settlement(
            self.ledger, held_limit=params.held_certificates, sync_batch=params.sync_batch
        )
        self.validator = (
            validator_factory(key, chain_id, self.ledger) if self.node_id in self.committee else None
        )
        self.router = GossipRouter(
            params.gossip, self.rng, committee=frozenset(self.committee.members), node_id=self.node_id
        )
        self._cert_ids: OrderedDict[Digest, MsgId] = OrderedDict()  # certified here -> gossip id
        self.votes = (
            VoteBook(chain_id, self.committee, limit=params.pending_orders)
            if signature_verify is None
            else VoteBook(chain_id, self.committee, limit=params.pending_orders, verify=signature_verify)
        )
        self.orders: OrderedDict[Digest, AnyOrder] = OrderedDict()  # proof-verified, not yet applied
        # A validator's orders that came straight from their origin (hops 1 from a non-committee peer:
        # the client waits there), to push the certificate there first. Bounded as ``orders``.
        self._order_origin: OrderedDict[Digest, NodeId] = OrderedDict()
        # Verification results and work in flight, keyed by statement AND proof (proof_key): a copy of
        # a payment with a broken proof must not condemn the genuine one.
        self.proofs: OrderedDict[bytes, bool] = OrderedDict()
        self.verifying: dict[bytes, list[_Ctx]] = {}
        self.certified: OrderedDict[Digest, float] = OrderedDict()  # valid certificate seen -> when
        # Views of the settlement's containers (the same objects), for status, tests and tools.
        self.settled = self.settlement.settled
        self.certs = self.settlement.certs
        self.held_certs = self.settlement.held_certs
        self.shielded_certs = self.settlement.shielded_certs
        self.outputs = self.settlement.outputs
        self.visible: DurableView = self.settlement.visible  # what clients may observe
        self.slots = SlotWatch(self.committee, limit=params.pending_orders)
        self.held_orders: dict[tuple[Address, int], Digest] = {}
        self.held_shielded_orders: OrderedDict[Digest, None] = OrderedDict()
        self.penalties: dict[NodeId, int] = {}
        # Useless traffic per peer (docs/dos.md): messages that cannot help cost a point, useful
        # deliveries earn one back; a peer that spent its reserve is cut off like an invalid one.
        self.useless: Budgets[NodeId] = Budgets(rate=params.useless_rate, burst=params.useless_burst)
        # Anti-entropy answers per peer: ``sync_batch`` certificates (and summary answers) per sync
        # period, with one period's worth in reserve. A peer asking faster gets less, not more: a
        # few-byte request cannot make this node send history at any rate it likes.
        self.sync_budget: Budgets[NodeId] = Budgets(
            rate=params.sync_batch / params.sync_interval, burst=float(params.sync_batch)
        )
        self.summary_budget: Budgets[NodeId] = Budgets(rate=4 / params.sync_interval, burst=4.0)
        # Anti-amplification (docs/dos.md, "Sync replies"): a peer outside the committee earns
        # ``sync_reply_factor`` bytes of sync replies per byte it sent this node, held up to
        # ``sync_credit_max``; replies are trimmed to it. Requests refused by the rate limits above
        # are counted as strikes (``sync_strikes`` in reserve, 2 per sync period regained); a peer
        # out of strikes is penalized.
        self.sync_credit: Budgets[NodeId] = Budgets(rate=0.0, burst=float(params.sync_credit_max), empty=True)
        self.sync_strikes: Budgets[NodeId] = Budgets(
            rate=2 / params.sync_interval, burst=float(params.sync_strikes)
        )
        self.sync_stats = {"rate_limited": 0, "credit_trimmed": 0, "penalized": 0}
        self._next_sync = 0.0
        self._first_seen: dict[Digest, float] = {}  # pending orders: when this node first held them
        self.proof_budget = ProofBudget(
            rate=params.verify_rate, burst=params.verify_burst, bad_cost=BAD_PROOF_COST
        )
        self.verify_stats = {"budget_ignored": 0, "budget_refused": 0, "dropped": 0, "bad_proofs": 0}
        # Held orders: when first deferred and why; orders clients submitted here (to refuse them on
        # expiry); expired submitted orders and the reason, for their waiting clients. All bounded.
        self._held_at: dict[Digest, tuple[float, str, tuple[Address, int] | None]] = {}
        self._submitted: OrderedDict[Digest, None] = OrderedDict()
        self.expired: OrderedDict[Digest, str] = OrderedDict()
        self._next_expiry = 0.0
        self._next_decay = 0.0

    # == lifecycle ==================================================================================
    def restore(
        self,
        accounts: dict[bytes, tuple[int, int]],
        certs: Iterable[bytes],
        locks: Iterable[tuple[bytes, int, bytes, bytes]],
        notes: dict[bytes, bool] | None = None,
    ) -> None:
        """Load persisted state: accounts, applied certificates, notes, and (validators) durable locks
        ``(key, seq, digest, order bytes)``. A locked order that has not settled becomes pending again
        with this validator's vote, re-signed, so that it is pushed again and can still settle."""
        self.settlement.restore(accounts, certs, notes)
        v = self.validator
        if v is None:
            return
        restored: list[Digest] = []
        for key, seq, lock_digest, order_bytes in locks:
            digest = Digest(lock_digest)
            if not v.restore_lock(Address(key), seq, digest):
                continue  # the validator keeps no such lock: nor does the order come back with it
            if digest in self.settled or digest in self.orders or not order_bytes:
                continue
            try:
                order = decode(order_bytes)
            except DecodeError:
                continue  # written by this node, so never expected; the lock alone still holds
            if not isinstance(order, (Order, ShieldedOrder)) or statement_digest(order) != digest:
                continue
            self.orders[digest] = order
            self._first_seen[digest] = float("-inf")  # pushed again at the first sync tick
            self.slots.add_order(digest, self._slots(order))
            restored.append(digest)
        for vote in v.vote_batch(restored):  # re-signed together: one signature for them all
            self.votes.add(vote)

    def on_durable(self, now: float, writes: Iterable[PersistApplied]) -> list[Effect]:
        """The driver's commits of these applied certificates returned (in apply order)."""
        return self.settlement.on_durable(writes)

    def status(self) -> dict[str, Any]:
        """Durable figures only (``applied``, ``root``, ``notes``): what a restart would show."""
        return {
            "applied": self.visible.applied,
            "root": self.visible.root.hex(),
            "blocked": len(self.slots.blocked),
            "blocked_slots": [b.as_dict() for b in list(self.slots.blocked.values())[-32:]],
            "accounts": len(self.ledger.accounts),
            "held_certificates": len(self.held_certs),
            "held_orders": len(self.held_orders),
            "notes": len(self.visible.notes),
            "shielded_applied": self.visible.shielded_applied,
            "verifying": len(self.verifying),
            "verify_budget": {**self.verify_stats, "sources": len(self.proof_budget)},
            "gossip": self.router.stats.as_dict(),
            "gossip_received": dict(self.router.kinds_received),  # first deliveries by kind
            "gossip_pushed": dict(self.router.kinds_sent),  # full copies sent by kind
            "signature_checks": self.votes.checks,
        }

    # == peers ======================================================================================
    def on_peer_connected(self, now: float, peer: NodeId) -> list[Effect]:
        self.router.add_peer(peer)
        if peer in self.committee:
            self.router.prove(peer)
        out: list[Effect] = [self._sync_probe(peer)]
        if self.validator is not None:
            # Orders this validator is locked on and that have not settled (e.g. after a restart):
            # the new peer gets them with our vote at once, not after a sync period.
            out += self._repush_pending(now, peer, only_locked=True)
        return out

    def on_peer_neighbors(self, peer: NodeId, neighbors: Iterable[bytes]) -> None:
        """``peer`` told us its peers (peer exchange); gossip uses it to avoid duplicate pushes."""
        self.router.set_neighbors(peer, frozenset(NodeId(n) for n in neighbors))

    def on_peer_disconnected(self, now: float, peer: NodeId) -> list[Effect]:
        self.router.remove_peer(peer)
        self.sync_budget.forget(peer)
        self.summary_budget.forget(peer)
        self.sync_credit.forget(peer)
        self.sync_strikes.forget(peer)
        self.proof_budget.forget(peer)
        self.useless.forget(peer)
        self.penalties.pop(peer, None)  # a fresh key per connection must not grow this table
        return self._drop_queued(peer, "peer disconnected")

    def on_message(self, now: float, peer: NodeId, msg: Message) -> list[Effect]:
        """A decoded peer message (handshake, ping and peer exchange are the driver's)."""
        self.earn(now, peer, len(msg.data) + 8 if isinstance(msg, Gossip) else wire_size(msg))
        if isinstance(msg, Gossip):
            return self._on_gossip(now, peer, msg)
        if isinstance(msg, IHave):
            dropped = self.router.stats.ihave_dropped
            wants: list[Effect] = list(self.router.on_ihave(now, peer, msg.ids))
            if self.router.stats.ihave_dropped > dropped:  # beyond its ids per heartbeat
                wants += self._useless(now, peer, "IHAVE beyond its ids per heartbeat")
            return wants
        if isinstance(msg, IWant):
            refused = self.router.stats.iwant_refused
            served: list[Effect] = list(self.router.on_iwant(now, peer, msg.ids))
            again = self.router.stats.iwant_refused - refused
            return served + (self._useless(now, peer, "IWANT for ids served already", again) if again else [])
        if isinstance(msg, SyncSummary):
            if msg.root == self.ledger.root():
                return []
            if not self.summary_budget.take(peer, now, 1):
                return self._rate_limited(now, peer, "SyncSummary")
            out_sync: list[Effect] = []
            for m in self._summary_answer():
                if self._spend(now, peer, m):
                    out_sync.append(Send(peer, m))
            return out_sync
        if isinstance(msg, ShieldedHave):
            budget = self._credit(now, peer)
            answer = self.settlement.shielded_have_reply(peer, msg, budget)
            return self._budgeted(now, peer, answer, "ShieldedHave")
        if isinstance(msg, SyncHeads):
            budget = self._credit(now, peer)
            return self._budgeted(now, peer, self.settlement.heads_reply(peer, msg, budget), "SyncHeads")
        if isinstance(msg, CertRequest):
            found = []
            left = self._credit(now, peer)
            left = None if left is None else left - BATCH_OVERHEAD
            for a, s in dict.fromkeys(msg.items):
                raw = self.certs.get((Address(a), s))
                if raw is None:
                    continue
                if left is not None:
                    if len(raw) + CERT_OVERHEAD > left:
                        break
                    left -= len(raw) + CERT_OVERHEAD
                found.append(raw)
            replies: list[Effect] = [Send(peer, CertBatch(certs=tuple(found)))] if found else []
            return self._budgeted(now, peer, replies, "CertRequest")
        if isinstance(msg, CertBatch):
            out: list[Effect] = []
            heads: dict[Address, tuple[int, int]] = {}  # sender -> (our next seq, next after this batch)
            for raw in msg.certs:
                try:
                    cert = self._decode(raw)
                except DecodeError as exc:
                    out += self._reject(peer, "certificate", str(exc))
                    continue
                if not isinstance(cert, (Certificate, ShieldedCertificate)):
                    out += self._reject(peer, "certificate", f"{type(cert).__name__} in a CertBatch")
                    continue
                if isinstance(cert, Certificate):
                    t = cert.order.transfer
                    start = self.ledger.next_seq(t.sender)
                    first, nxt = heads.get(t.sender, (start, start))
                    heads[t.sender] = (first, nxt + 1 if t.seq == nxt else nxt)
                out += self._on_certificate(now, peer, None, raw, 0, cert)
            return out + self._sync_continue(peer, heads)
        return self._reject(peer, type(msg).__name__, "unexpected message")

    # == anti-entropy requests and their budgets =====================================================
    def _sync_probe(self, peer: NodeId) -> Send:
        """What this node sends a peer to start anti-entropy. A committee member sends its summary
        (peers answer the committee in full); any other node sends its request at once, its heads
        naming every account it knows: a stranger's few-byte summary buys no answer (``_spend``)."""
        if self.node_id in self.committee:
            return Send(peer, SyncSummary(root=self.ledger.root(), applied=self.ledger.applied_count()))
        return Send(peer, SyncHeads(heads=self.settlement.request_heads(), reply=True))

    def _summary_answer(self) -> list[Message]:
        out: list[Message] = [SyncHeads(heads=self.settlement.request_heads(), reply=True)]
        if self.shielded:
            out.append(ShieldedHave(digests=tuple(self.shielded_certs), reply=True))
        return out

    def _sync_continue(self, peer: NodeId, heads: dict[Address, tuple[int, int]]) -> list[Effect]:
        """After a CertBatch that carried certificates at our heads: ask the same peer for the rest at
        once, naming the heads this node will have once they apply (its answer was trimmed to a
        budget: "the rest after the next request"). A batch with nothing at our heads asks nothing,
        so the exchange stops when the peer has nothing more."""
        ahead = {a: nxt for a, (first, nxt) in heads.items() if nxt > first}
        if not ahead:
            return []
        request = tuple((a, max(s, ahead.get(Address(a), 0))) for a, s in self.settlement.request_heads())
        return [Send(peer, SyncHeads(heads=request, reply=False))]

    def _credit(self, now: float, peer: NodeId) -> int | None:
        """Bytes of sync replies ``peer`` may still receive: None (unbounded by bytes) for a committee
        member, authenticated by the genesis; its earned credit for anyone else."""
        return None if peer in self.committee else self.sync_credit.available(peer, now)

    def earn(self, now: float, peer: NodeId, size: int) -> None:
        """``peer`` sent this node ``size`` bytes: it earns ``sync_reply_factor`` times that in reply
        credit (one account per peer, shared with the driver's link-level answers)."""
        if peer not in self.committee:
            self.sync_credit.give(peer, now, size * self.params.sync_reply_factor)

    def reply_credit(self, now: float, peer: NodeId) -> int | None:
        """Bytes of replies ``peer`` may still get (None: a committee member, not bounded by bytes)."""
        return self._credit(now, peer)

    def spend(self, now: float, peer: NodeId, msg: Message) -> bool:
        """For the driver's link-level answers: see ``_spend``."""
        return self._spend(now, peer, msg)

    def _spend(self, now: float, peer: NodeId, msg: Message) -> bool:
        """Take ``msg``'s wire size from ``peer``'s credit; False (not sent) if it does not fit."""
        if peer in self.committee:
            return True
        size = wire_size(msg)
        if self.sync_credit.available(peer, now) < size:
            self.sync_stats["credit_trimmed"] += 1
            return False
        self.sync_credit.charge(peer, now, size)
        return True

    def _rate_limited(self, now: float, peer: NodeId, kind: str) -> list[Effect]:
        """A sync request beyond the peer's rate limit: not answered, counted; a peer that keeps
        going over (out of ``sync_strikes``) is penalized through the usual path."""
        self.sync_stats["rate_limited"] += 1
        if self.sync_strikes.take(peer, now, 1):
            return []
        self.sync_stats["penalized"] += 1
        self.sync_strikes.forget(peer)
        reason = f"rate limited: {kind} requests beyond the per-peer sync budget"
        return [Disconnect(peer, reason), *self._drop_queued(peer, "peer penalized")]

    def _budgeted(self, now: float, peer: NodeId, replies: list[Effect], kind: str) -> list[Effect]:
        """Trim anti-entropy answers to ``peer``'s budgets: certificates beyond its rate are not sent
        (the peer asks again), a counter-request (``reply=False``) costs one summary token, and what
        is sent is taken from its byte credit (the answers were built to fit it). A request whose
        answer the rate limit cut entirely is a strike (``_rate_limited``)."""
        out: list[Effect] = []
        for e in replies:
            if isinstance(e, Send) and isinstance(e.msg, CertBatch):
                allowed = self.sync_budget.take(peer, now, len(e.msg.certs))
                if not allowed:
                    out += self._rate_limited(now, peer, kind)
                    continue
                batch = CertBatch(certs=e.msg.certs[:allowed])
                if self._spend(now, peer, batch):
                    out.append(Send(peer, batch))
            elif isinstance(e, Send) and self.summary_budget.take(peer, now, 1):
                if self._spend(now, peer, e.msg):
                    out.append(e)
        return out

    def _useless(self, now: float, peer: NodeId | None, what: str, n: int = 1) -> list[Effect]:
        """``peer`` sent ``n`` messages that cannot help; cut it off once its reserve is spent."""
        if peer is None or peer in self.committee or self.useless.charge(peer, now, n) > 0:
            return []  # committee members are exempt: a restarted validator re-pushes its locked orders
        self.useless.forget(peer)
        out: list[Effect] = [Disconnect(peer, f"useless traffic: {what}")]
        return out + self._drop_queued(peer, "peer penalized")

    def _useful(self, now: float, peer: NodeId | None) -> None:
        if peer is not None:
            self.useless.give(peer, now, 1)
            self.router.prove(peer)

    def _old(self, now: float, digest: Digest) -> bool:
        """Settled here more than ``REPLAY_AFTER_S`` ago (or before this node started): a message
        about it is a replay. A late vote or relay of a payment that just settled is normal and
        costs nothing (the fourth vote of a 3-of-4 quorum always comes after the certificate)."""
        if digest not in self.settled:
            return False
        when = self.certified.get(digest)
        return when is None or now - when > REPLAY_AFTER_S

    def _reject(self, peer: NodeId | None, kind: str, reason: str, tx: bytes | None = None) -> list[Effect]:
        fields: dict[str, Any] = {"reason": reason, "kind": kind, "peer": short(peer)}
        if tx is not None:
            fields["tx"] = tx.hex()
        out: list[Effect] = [Emit("message_rejected", fields)]
        if peer is None:
            return out
        self.router.mark_invalid()
        score = self.penalties.get(peer, 0) + 1
        self.penalties[peer] = score
        if score >= PENALTY_LIMIT:
            self.penalties.pop(peer, None)
            out.append(Disconnect(peer, f"{score} invalid messages"))
            out += self._drop_queued(peer, "peer penalized")
        return out

    # == verification work per source ================================================================
    def _drop_queued(self, source: Source, why: str) -> list[Effect]:
        """Forget the orders ``source`` queued for verification that no other source asked for: the
        driver skips them (``still_wanted``). Clients still waiting are refused."""
        out: list[Effect] = []
        dropped = 0
        for pkey, ctxs in list(self.verifying.items()):
            keep = [c for c in ctxs if c.kind == "cert" or c.source != source]
            if len(keep) == len(ctxs):
                continue
            for c in ctxs:
                if c.kind == "submit" and c.source == source:
                    digest = statement_digest(c.msg)  # type: ignore[arg-type]
                    out.append(OrderOutcome(digest, False, f"connection closed: {why}"))
            if keep:
                self.verifying[pkey] = keep
            else:
                del self.verifying[pkey]
                dropped += 1
        if dropped:
            self.verify_stats["dropped"] += dropped
            out.append(Emit("verify_dropped", {"peer": _label(source), "orders": dropped, "reason": why}))
        return out

    def still_wanted(self, digest: Digest, order: AnyOrder) -> bool:
        """Is this queued proof still to be verified? False once every source that asked for it was
        penalized or disconnected (or its result is known): the driver skips it."""
        return proof_key(digest, order) in self.verifying

    def verify_lane(self, now: float, digest: Digest, order: AnyOrder) -> Hashable:
        """Which lane this queued proof waits in: ``CERTIFICATES`` if a certificate needs it, else the
        most trusted of the sources that asked for it (``lane_trust``). One lane per source, so a
        failed batch's bisection over one source's bad proofs never holds another source's proof."""
        ctxs = self.verifying.get(proof_key(digest, order), [])
        if not ctxs or any(c.kind == "cert" for c in ctxs):
            return CERTIFICATES
        return min(ctxs, key=lambda c: self.proof_budget.trust(c.source, now)).source

    def lane_trust(self, now: float, lane: Hashable) -> Trust:
        """The standing of a verification lane (see :func:`p2pnode.core.budget.choose_batch`)."""
        return Trust.CERT if lane == CERTIFICATES else self.proof_budget.trust(lane, now)

    # == gossip =====================================================================================
    def _on_gossip(self, now: float, peer: NodeId, msg: Gossip) -> list[Effect]:
        mid, new, repeat = self.router.receive_from(now, peer, msg.data)
        if not new:
            # A duplicate is normal gossip (several peers push the same payload) and free; the same
            # peer sending the same payload again is not.
            return self._useless(now, peer, "the same payload again") if repeat else []
        try:
            inner = self._decode(msg.data)
        except DecodeError as exc:
            return self._reject(peer, "gossip", str(exc))
        received = self.router.kinds_received
        if isinstance(inner, (Order, ShieldedOrder)):
            received[ORDER] += 1
            return self._on_order(now, _Ctx("order", peer, mid, msg.data, msg.hops, inner, peer))
        if isinstance(inner, Vote):
            received[VOTE] += 1
            return self._on_vote(now, peer, mid, msg.data, msg.hops, inner)
        if isinstance(inner, (Certificate, ShieldedCertificate)):
            received[CERT] += 1
            return self._on_certificate(now, peer, mid, msg.data, msg.hops, inner)
        return self._reject(peer, "gossip", f"{type(inner).__name__} is not gossiped")

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = list(self.router.tick(now))
        for peer, broken in self.router.take_broken_promises().items():
            # One penalty per heartbeat whatever the count: a flood of fake announcements costs its
            # sender the connection within PENALTY_LIMIT heartbeats; an honest peer that lost a
            # payload from its cache now and then stays far below that (and the count decays). A
            # promise is judged only after gossip.iwant_followup_ms, so a slow reply is not a miss.
            if peer in self.router.peers:
                out += self._reject(peer, "ihave", f"{broken} announced ids never delivered")
        if now >= self._next_decay:
            self._next_decay = now + PENALTY_DECAY_S
            for peer, score in list(self.penalties.items()):
                if score > 1:
                    self.penalties[peer] = score - 1
                else:
                    del self.penalties[peer]
        if now >= self._next_sync and self.router.peers:
            self._next_sync = now + self.params.sync_interval
            peer = self.rng.choice(self.router.peers)
            out.append(self._sync_probe(peer))
            out += self._repush_pending(now, peer)
        if now >= self._next_expiry:
            self._next_expiry = now + min(1.0, self.params.held_order_s / 4)
            self.proof_budget.prune(now)
            out += self._expire_held(now)
        return out

    def _repush_pending(self, now: float, peer: NodeId, *, only_locked: bool = False) -> list[Effect]:
        """Anti-entropy for payments in flight: orders still without a certificate after a sync
        period, and the votes we hold for them, go again to one peer. Certificates repair themselves
        (SyncHeads), but votes gathered on two sides of a healed partition would otherwise never meet.
        Receivers drop what they have seen by id; bounded per tick."""
        out: list[Effect] = []
        sent: set[bytes] = set()  # a batch vote covering several stale orders goes once
        votes_to_peer = peer in self.committee or self.router.bridging()
        if peer not in self.committee and any(p in self.committee for p in self.router.peers):
            return out  # orders are for validators (docs/gossip.md): this node has a committee peer
        stale_before = now - self.params.sync_interval
        for digest, (order, since) in list(self._pending_since(now).items())[: self.params.sync_batch // 4]:
            if digest in self.certified or digest in self.settled:
                continue
            if only_locked:
                if self.validator is None or digest not in self.validator.durable:
                    continue
            elif since > stale_before:
                continue
            out.append(Send(peer, Gossip(data=order.encode(), hops=1)))
            if not votes_to_peer:
                continue  # votes travel among validators only (or through a bridge)
            for vote in self.votes.messages(digest):
                raw = vote.encode()
                if raw not in sent:
                    sent.add(raw)
                    out.append(Send(peer, Gossip(data=raw, hops=1)))
        return out

    def _pending_since(self, now: float) -> dict[Digest, tuple[AnyOrder, float]]:
        for digest in self.orders:
            self._first_seen.setdefault(digest, now)
        for digest in [d for d in self._first_seen if d not in self.orders]:
            del self._first_seen[digest]
        return {d: (o, self._first_seen[d]) for d, o in self.orders.items()}

    # == orders =====================================================================================
    def on_submit(self, now: float, order: AnyOrder, source: Source = None) -> list[Effect]:
        """A client handed us an order. Ends, now or after verification, with one OrderOutcome.

        ``source`` is the driver's key for the client connection (hashable, never bytes): its proofs
        are budgeted, and its invalid ones counted, like a peer's. A connection cut for invalid proofs
        is refused with a ``CloseClient`` effect last."""
        digest = statement_digest(order)
        if self.proof_budget.is_cut(source):
            reason = "connection closed: too many invalid proofs"
            return [
                Emit("order_refused", {"tx": digest.hex(), "reason": reason}),
                OrderOutcome(digest, False, reason),
                CloseClient(source, reason),
            ]
        if isinstance(order, Order):
            t = order.transfer
            fields: dict[str, Any] = {
                "tx": digest.hex(),
                "sender": t.sender.hex(),
                "seq": t.seq,
                "amount": t.amount,
            }
        else:
            tx = order.tx
            fields = {
                "tx": digest.hex(),
                "sender": tx.account.hex(),
                "seq": tx.seq,
                "amount": tx.public_in,
                "shielded": tx.kind,
            }
        out: list[Effect] = [Emit("order_submitted", fields)]
        blocked = self._blocked_reason(self._slots(order)) if digest not in self.settled else ""
        if blocked:
            out.append(Emit("order_refused", {"tx": digest.hex(), "reason": blocked}))
            out.append(OrderOutcome(digest, False, blocked))
            return out
        try:
            if digest not in self.settled:
                stale = admit(
                    order,
                    self.chain_id,
                    self.ledger,
                    self.shielded,
                    self.params.future_seqs,
                    check_balance=False,
                )
                if stale is not None:
                    too_low = stale == "already settled" and isinstance(order, Order)
                    raise OrderError("seq too low" if too_low else stale)
                client_state_checks(order, self.ledger)
        except REFUSALS as exc:
            reason = str(exc)
            if isinstance(exc, OrderError) and reason == "seq too low":
                t = order.transfer  # type: ignore[union-attr]
                reason = str(SeqTooLow(t.seq, self.ledger.next_seq(t.sender)))
            out.append(Emit("order_refused", {"tx": digest.hex(), "reason": reason}))
            out.append(OrderOutcome(digest, False, reason))
            return out
        if digest in self.settled or digest in self.orders:
            if digest in self.orders and digest not in self.certified:
                out += self.router.publish(now, self.orders[digest].encode(), ORDER)  # a client retry
            out.append(OrderOutcome(digest, True))
            return out
        data = order.encode()
        mid, new = self.router.receive(now, None, data)
        return out + self._on_order(now, _Ctx("submit", None, mid if new else None, data, 0, order, source))

    def _on_order(self, now: float, ctx: _Ctx) -> list[Effect]:
        order = ctx.msg
        assert isinstance(order, (Order, ShieldedOrder))
        digest = statement_digest(order)
        if digest in self.settled and ctx.kind == "order":
            # [IGNORE] settled here: neither verified nor logged nor relayed again
            return (
                self._useless(now, ctx.peer, "orders of payments settled long ago")
                if self._old(now, digest)
                else []
            )
        out: list[Effect] = [
            Emit("order_received", {"tx": digest.hex(), "hops": ctx.hops, "peer": short(ctx.peer)})
        ]
        try:
            stale = admit(order, self.chain_id, self.ledger, self.shielded, self.params.future_seqs)
        except REFUSALS as exc:
            return out + self._reject(ctx.peer, "order", str(exc), digest)
        if stale is not None:
            out.append(Emit("order_ignored", {"tx": digest.hex(), "reason": stale}))
            # A different order for a settled seq cannot help. An order too far ahead costs nothing:
            # it is dropped after a cheap check, and an honest relay sends such orders whenever this
            # node lags behind on an account (after a restart, say).
            if stale == "already settled":
                out += self._useless(now, ctx.peer, "orders for settled seqs")
            return out
        if ctx.kind == "order" and isinstance(order, Order):
            # [IGNORE] a second order for a future (sender, seq): the first one verified here waits
            # for its predecessor; another is neither verified nor relayed (one payer cannot make the
            # network verify and carry many variants of each of its next seqs). For the account's
            # next seq a conflicting order is still taken: it is the evidence that blocks a slot.
            t = order.transfer
            others = self.slots.orders_for((t.sender, t.seq))
            if others and digest not in others and t.seq > self.ledger.next_seq(t.sender):
                out.append(Emit("order_ignored", {"tx": digest.hex(), "reason": FUTURE_CONFLICT}))
                return out + self._useless(now, ctx.peer, "conflicting orders for future seqs")
        pkey = proof_key(digest, order)
        known = self.proofs.get(pkey)
        if known is True:
            return out + self._order_valid(now, ctx, digest)
        if known is False:
            return out + self._bad_proof(now, ctx, digest)
        waiting = self.verifying.get(pkey)
        if waiting is not None:
            waiting.append(ctx)
            return out
        if len(self.verifying) >= self.params.pending_orders:
            out.append(Emit("order_ignored", {"tx": digest.hex(), "reason": "verification queue full"}))
            if ctx.kind == "submit":
                out.append(OrderOutcome(digest, False, "node overloaded, try again"))
            return out
        if not self.proof_budget.take(ctx.source, now):
            # [IGNORE] (no penalty: an honest relay may be busy) and forget its id, so that another
            # peer's copy of the same order is still taken; a client hears it at once.
            if ctx.mid is not None:
                self.router.forget(ctx.mid)
            out.append(
                Emit(
                    "order_ignored",
                    {"tx": digest.hex(), "reason": "verification budget", "peer": _label(ctx.source)},
                )
            )
            if ctx.kind == "submit":
                self.verify_stats["budget_refused"] += 1
                out.append(Emit("order_refused", {"tx": digest.hex(), "reason": BUSY}))
                out.append(OrderOutcome(digest, False, BUSY))
            else:
                self.verify_stats["budget_ignored"] += 1
            return out
        self.verifying[pkey] = [ctx]
        out.append(VerifyProofs(((digest, order),)))
        return out

    def on_proofs_verified(
        self, now: float, results: Iterable[tuple[Digest, AnyOrder, bool, int, int]]
    ) -> list[Effect]:
        """Results of VerifyProofs: (digest, order, ok, duration_us, batch size)."""
        out: list[Effect] = []
        for digest, order, ok, duration_us, batch in results:
            pkey = proof_key(digest, order)
            self.proofs[pkey] = ok
            if len(self.proofs) > 4 * self.params.pending_orders:
                self.proofs.popitem(last=False)
            out.append(
                Emit(
                    "proof_verified",
                    {"tx": digest.hex(), "ok": ok, "duration_us": duration_us, "batch": batch},
                )
            )
            for ctx in self.verifying.pop(pkey, []):
                if not ok:
                    out += self._bad_proof(now, ctx, digest)
                elif ctx.kind == "cert":
                    assert isinstance(ctx.msg, (Certificate, ShieldedCertificate))
                    out += self._certificate_valid(
                        now, ctx.peer, ctx.mid, ctx.data, ctx.hops, ctx.msg, digest
                    )
                else:
                    self.proof_budget.on_good(ctx.source, now)  # its source is trusted now
                    out += self._order_valid(now, ctx, digest)
        return out

    def _reject_cert(
        self, peer: NodeId | None, mid: MsgId | None, reason: str, digest: Digest
    ) -> list[Effect]:
        if mid is not None:
            self.router.forget(mid)  # a certificate's id names its statement: let a valid one through
        return self._reject(peer, "certificate", reason, digest)

    def _bad_proof(self, now: float, ctx: _Ctx, digest: Digest) -> list[Effect]:
        if ctx.kind == "cert":
            return self._reject_cert(ctx.peer, ctx.mid, "proof does not verify", digest)
        self.verify_stats["bad_proofs"] += 1
        self.proof_budget.on_bad(ctx.source, now)
        out = self._reject(ctx.peer, "order", "proof does not verify", digest)
        if ctx.kind == "submit":
            out.append(Emit("order_refused", {"tx": digest.hex(), "reason": "proof does not verify"}))
            out.append(OrderOutcome(digest, False, "proof does not verify"))
            if ctx.source is not None and self.proof_budget.strike(ctx.source) >= PENALTY_LIMIT:
                reason = f"{PENALTY_LIMIT} invalid proofs"
                self.proof_budget.cut_off(ctx.source, now)
                out += self._drop_queued(ctx.source, "client cut off")
                out.append(CloseClient(ctx.source, reason))
        return out

    def _order_valid(self, now: float, ctx: _Ctx, digest: Digest) -> list[Effect]:
        order = ctx.msg
        assert isinstance(order, (Order, ShieldedOrder))
        out: list[Effect] = []
        if digest not in self.settled and digest not in self.orders:
            self._useful(now, ctx.peer)
            self.orders[digest] = order
            while len(self.orders) > self.params.pending_orders:
                evicted, _ = self.orders.popitem(last=False)
                if evicted in self._held_at:
                    out += self._expire(evicted, "evicted: the pending-order table is full")
            self.slots.add_order(digest, self._slots(order))
            out += self._check_slots(digest)
        if ctx.mid is not None:
            if ctx.kind == "submit":
                out += self.router.publish(now, ctx.data, ORDER)
            else:
                out += self.router.forward(now, ctx.mid, ctx.data, ctx.hops, ctx.peer, ORDER)
                if (
                    self.validator is not None
                    and ctx.hops == 1
                    and ctx.peer is not None
                    and ctx.peer not in self.router.committee
                ):
                    self._order_origin[digest] = ctx.peer
                    while len(self._order_origin) > self.params.pending_orders:
                        self._order_origin.popitem(last=False)
        if ctx.kind == "submit":
            out.append(OrderOutcome(digest, True))
            self._submitted[digest] = None
            while len(self._submitted) > self.params.pending_orders:
                self._submitted.popitem(last=False)
        out += self._try_vote(now, order, digest)
        out += self._maybe_certify(now, digest)
        return out

    def _try_vote(self, now: float, order: AnyOrder, digest: Digest) -> list[Effect]:
        v = self.validator
        if v is None or digest in self.settled:
            return []
        if isinstance(order, ShieldedOrder):
            return self._try_vote_shielded(now, v, order, digest)
        t = order.transfer
        try:
            v.check(order, digest)
        except SeqTooLow:
            return []
        except (SeqTooHigh, LedgerError) as exc:
            # Predecessors or credits missing: wait for them (bounded), retried on each apply.
            return self._hold(now, digest, str(exc), (t.sender, t.seq))
        except OrderError as exc:
            return [Emit("vote_refused", {"tx": digest.hex(), "reason": str(exc)})]
        if v.lock(order, digest):
            return [PersistLock(((t.sender, t.seq),), digest, order.encode())]
        return self._vote_again(now, v, digest)

    def _try_vote_shielded(
        self, now: float, v: Validator, order: ShieldedOrder, digest: Digest
    ) -> list[Effect]:
        try:
            v.check_shielded(order, digest)
        except SeqTooLow:
            return []
        except (SeqTooHigh, UnknownNote, LedgerError) as exc:
            return self._hold(now, digest, str(exc), None)
        except (OrderError, ShieldedError) as exc:
            return [Emit("vote_refused", {"tx": digest.hex(), "reason": str(exc)})]
        keys = shielded_lock_keys(order.tx)
        if v.lock_keys(keys, digest):
            return [PersistLock(keys, digest, order.encode())]
        return self._vote_again(now, v, digest)

    # == held orders ================================================================================
    def _hold(self, now: float, digest: Digest, reason: str, key: tuple[Address, int] | None) -> list[Effect]:
        """Defer the vote on ``digest`` (predecessor or funds missing), retried on each apply that may
        unblock it, and expired after ``held_order_s`` (``_expire_held``)."""
        out: list[Effect] = [Emit("vote_deferred", {"tx": digest.hex(), "reason": reason})]
        table: dict[Any, Any] = self.held_shielded_orders if key is None else self.held_orders
        first = self._held_at.get(digest)  # retried and still blocked: it keeps its first deferral time
        if len(table) >= self.params.pending_orders:
            self._held_at.pop(digest, None)
            return out + self._expire(digest, "held-order table full")
        if key is not None:
            other = self.held_orders.get(key)
            if other is not None and other != digest:
                self._held_at.pop(other, None)
                out += self._expire(other, "another order for the same seq was deferred after it")
            self.held_orders[key] = digest
        else:
            self.held_shielded_orders[digest] = None
        self._held_at[digest] = first or (now, reason, key)
        return out

    def _expire_held(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        limit = self.params.held_order_s
        for digest, (since, reason, key) in list(self._held_at.items()):
            held = digest in self.held_shielded_orders if key is None else self.held_orders.get(key) == digest
            if not held or digest in self.settled or digest in self.certified:
                del self._held_at[digest]  # voted on, certified or settled meanwhile
                continue
            if now - since < limit:
                continue
            del self._held_at[digest]
            if key is None:
                del self.held_shielded_orders[digest]
            else:
                del self.held_orders[key]
            out += self._expire(digest, f"expired: held {limit:g} s without being votable ({reason})")
        return out

    def _expire(self, digest: Digest, reason: str) -> list[Effect]:
        """Give up on the pending order ``digest`` here: logged, and refused to a client that submitted
        it here (its outcome was "accepted" already: its WaitSettled is woken with the reason)."""
        self.orders.pop(digest, None)
        self._first_seen.pop(digest, None)
        submitted = digest in self._submitted
        out: list[Effect] = [
            Emit("order_expired", {"tx": digest.hex(), "reason": reason, "submitted_here": submitted})
        ]
        if submitted:
            del self._submitted[digest]
            self.expired[digest] = reason
            while len(self.expired) > self.params.pending_orders:
                self.expired.popitem(last=False)
            out += [OrderOutcome(digest, False, reason), Blocked((digest,))]
        return out

    def _vote_fields(self, digest: Digest) -> dict[str, Any]:
        order = self.orders.get(digest)
        fields: dict[str, Any] = {"tx": digest.hex()}
        if isinstance(order, Order):
            fields.update(seq=order.transfer.seq, sender=order.transfer.sender.hex())
        elif order is not None:
            fields.update(seq=order.tx.seq, sender=order.tx.account.hex())
        return fields

    def _vote_again(self, now: float, v: Validator, digest: Digest) -> list[Effect]:
        """Already locked to this very order (seen again, e.g. after our restart): the same vote
        again, if the lock is durable; if its commit is still running, the vote follows it."""
        vote = v.vote(digest)
        if vote is None:
            return []
        self.votes.add(vote)
        out: list[Effect] = [Emit("vote_sent", {**self._vote_fields(digest), "again": True})]
        return out + self.router.publish(now, vote.encode(), VOTE) + self._maybe_certify(now, digest)

    def on_locks_committed(self, digests: Iterable[Digest]) -> None:
        """The driver's commit of these locks returned (called once per commit, before the tasks
        waiting on it go on): they are durable, and the first ``on_lock_persisted`` that follows
        signs them all in one batch. No effects: the signature is released by that call."""
        v = self.validator
        if v is not None:
            v.mark_durable(digests)

    def on_lock_persisted(self, now: float, digest: Digest) -> list[Effect]:
        """The driver made the lock for ``digest`` durable: sign and publish the vote. Every lock of
        the same commit (``on_locks_committed``) that is not signed yet goes into the same batch: one
        Ed25519 signature over the Merkle root of their digests; later calls for the others of that
        commit find them signed and return nothing."""
        v = self.validator
        if v is None:
            return []
        v.mark_durable((digest,))
        votes = v.vote_batch()
        out: list[Effect] = []
        for vote in votes:
            self.votes.add(vote)
            for d in vote.digests:
                out.append(Emit("vote_sent", {**self._vote_fields(Digest(d)), "batch": len(vote.digests)}))
            out += self.router.publish(now, vote.encode(), VOTE)
        for vote in votes:
            for d in vote.digests:
                out += self._check_slots(Digest(d))
                out += self._maybe_certify(now, Digest(d))
        return out

    # == votes and certificates =====================================================================
    def _on_vote(
        self, now: float, peer: NodeId, mid: MsgId, data: bytes, hops: int, vote: Vote
    ) -> list[Effect]:
        live = [Digest(d) for d in vote.digests if d not in self.settled and d not in self.certified]
        for d in vote.digests:
            cert_id = self._cert_ids.get(Digest(d))
            if cert_id is not None:
                self.router.note_has(cert_id, vote.validator)  # it has the votes: no announcement
        if not live:
            # [IGNORE] their certificates are here already: a late or replayed vote changes nothing, so
            # it is neither verified nor logged nor relayed (a replay after the seen-cache expired
            # too); votes of payments all settled long ago are a replay and cost their sender.
            old = all(self._old(now, Digest(d)) for d in vote.digests)
            return self._useless(now, peer, "votes of payments settled long ago") if old else []
        out: list[Effect] = [
            Emit("vote_received", {"tx": d.hex(), "validator": short(vote.validator), "hops": hops})
            for d in live
        ]
        if not self.votes.add(vote):
            return out + self._reject(
                peer, "vote", "vote signature invalid or signer not a validator", live[0]
            )
        self._useful(now, peer)
        out += self.router.forward(now, mid, data, hops, peer, VOTE)
        for d in live:
            out += self._check_slots(d)
            out += self._maybe_certify(now, d)
        return out

    # == blocked slots ==============================================================================
    @staticmethod
    def _slots(order: AnyOrder) -> tuple[Slot, ...]:
        if isinstance(order, Order):
            return ((order.transfer.sender, order.transfer.seq),)
        return shielded_lock_keys(order.tx)

    def _check_slots(self, digest: Digest) -> list[Effect]:
        found: list[BlockedSlot] = self.slots.check(digest, self.votes.validators)
        out: list[Effect] = []
        for record in found:
            fields = record.as_dict()
            fields["reason"] = record.reason()
            out.append(Emit("slot_blocked", fields))
            out.append(Blocked(tuple(d for d, _ in record.orders)))
        return out

    def _blocked_reason(self, slots: Iterable[Slot]) -> str:
        for slot in slots:
            reason = self.slots.reason(slot)
            if reason:
                return reason
        return ""

    def blocked_for(self, digest: Digest) -> str:
        """Why the payment ``digest`` can never settle here (its slot is blocked), or ""."""
        if digest in self.settled:
            return ""
        return self.expired.get(digest) or self._blocked_reason(self.slots.slots_of(digest))

    def blocked_account(self, addr: bytes) -> str:
        """Why ``addr``'s next seq can never settle (blocked by conflicting orders), or ""."""
        seqs = {self.ledger.next_seq(addr)}
        durable = self.visible.account(addr)
        if durable is not None:
            seqs.add(durable[1])
        return self._blocked_reason((addr, s) for s in sorted(seqs))

    def _maybe_certify(self, now: float, digest: Digest) -> list[Effect]:
        if digest in self.certified or digest in self.settled:
            return []
        order = self.orders.get(digest)
        if order is None:
            return []
        cert = self.votes.assemble(order, digest)
        if cert is None:
            return []
        data = cert.encode()
        mid, _ = self.router.receive(now, None, data)
        self._mark_certified(now, digest, mid)
        out: list[Effect] = [Emit("certificate_formed", {"tx": digest.hex(), "votes": len(cert.signatures)})]
        # Full nodes get it pushed; committee peers whose vote we hold were sent the same votes and
        # assemble it themselves, the others get it announced (docs/gossip.md).
        voters = frozenset(self.votes.validators(digest))
        first = self._order_origin.pop(digest, None)  # the client's node, if it sent us the order
        out += self.router.publish(now, data, CERT, skip=voters, first=first)
        out += self._apply_or_hold(now, None, cert, data, digest)
        return out

    def _mark_certified(self, now: float, digest: Digest, mid: MsgId | None = None) -> None:
        self.certified[digest] = now
        while len(self.certified) > 4 * self.params.pending_orders:
            self.certified.popitem(last=False)
        if mid is not None:
            self._cert_ids[digest] = mid
            while len(self._cert_ids) > self.params.pending_orders:
                self._cert_ids.popitem(last=False)

    def _on_certificate(
        self, now: float, peer: NodeId | None, mid: MsgId | None, data: bytes, hops: int, cert: AnyCert
    ) -> list[Effect]:
        order = cert.order
        digest = statement_digest(order)
        if digest in self.certified or digest in self.settled:
            # another assembly of a certificate we hold: nothing new, not forwarded
            return (
                self._useless(now, peer, "certificates of payments settled long ago")
                if self._old(now, digest)
                else []
            )
        out: list[Effect] = [
            Emit("certificate_received", {"tx": digest.hex(), "hops": hops, "peer": short(peer)})
        ]
        conflict = self.settlement.conflicting(order, digest)
        if conflict is not None:
            out.append(Emit("certificate_conflict", {"tx": digest.hex(), "applied": conflict.hex()}))
            return out + self._reject_cert(peer, mid, "conflicts with an applied certificate", digest)
        try:
            if isinstance(order, Order):
                static_checks(order, self.chain_id)
            elif not self.shielded:
                raise ShieldedError("shielded payments are not enabled on this chain")
            else:
                static_checks_shielded(order, self.chain_id)
        except (OrderError, ShieldedError) as exc:
            return out + self._reject_cert(peer, mid, str(exc), digest)
        reason = check_certificate(self.votes, cert, digest)
        if reason is not None:
            return out + self._reject_cert(peer, mid, reason, digest)
        pkey = proof_key(digest, order)
        if self.params.certificate_proofs and self.proofs.get(pkey) is not True:
            if self.proofs.get(pkey) is False:
                return out + self._reject_cert(peer, mid, "proof does not verify", digest)
            ctx = _Ctx("cert", peer, mid, data, hops, cert)
            waiting = self.verifying.get(pkey)
            if waiting is not None:
                waiting.append(ctx)
            else:
                self.verifying[pkey] = [ctx]
                out.append(VerifyProofs(((digest, order),)))
            return out
        return out + self._certificate_valid(now, peer, mid, data, hops, cert, digest)

    def _certificate_valid(
        self,
        now: float,
        peer: NodeId | None,
        mid: MsgId | None,
        data: bytes,
        hops: int,
        cert: AnyCert,
        digest: Digest,
    ) -> list[Effect]:
        if digest in self.certified or digest in self.settled:
            return []
        self._mark_certified(now, digest, mid if mid is not None else self.router.note_seen(now, data))
        self._useful(now, peer)
        out: list[Effect] = []
        if mid is not None:
            out += self.router.forward(now, mid, data, hops, peer, CERT)
        return out + self._apply_or_hold(now, peer, cert, data, digest)

    # == application ================================================================================
    def _apply_or_hold(
        self, now: float, peer: NodeId | None, cert: AnyCert, data: bytes, digest: Digest
    ) -> list[Effect]:
        result = self.settlement.apply_or_hold(peer, cert, data, digest)
        out = result.effects
        for applied, locks in result.applied:
            self.orders.pop(applied, None)
            self.votes.forget(applied)
            self.slots.clear(locks)
            if self.validator is not None:
                self.validator.release_keys(locks)
        # Orders a validator deferred may now be votable: the next seq of a touched account, and
        # (after new notes) shielded orders waiting for their inputs.
        for key in result.unblocked:
            held_order = self.held_orders.pop(key, None)
            if held_order is not None and held_order in self.orders:
                out += self._try_vote(now, self.orders[held_order], held_order)
        if result.notes_changed:
            for held in list(self.held_shielded_orders):
                del self.held_shielded_orders[held]
                waiting = self.orders.get(held)
                if waiting is not None:
                    out += self._try_vote(now, waiting, held)
        return out
