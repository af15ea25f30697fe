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

Held state (all bounded): orders a validator cannot vote on yet (predecessor or funds missing) and
certificates that cannot apply yet (same reasons). Each apply retries what it may have unblocked;
missing predecessors are fetched with CertRequest; anti-entropy (SyncSummary → SyncHeads → CertBatch)
repairs everything else.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from p2pnode.core.certificates import VoteBook, check_certificate
from p2pnode.core.committee import Committee
from p2pnode.core.effects import (
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
from p2pnode.core.gossip import GossipParams, GossipRouter
from p2pnode.core.ledger import Ledger, LedgerError, SeqTooHigh, SeqTooLow, UnknownNote
from p2pnode.core.payments import transfer_digest
from p2pnode.core.shielded import ShieldedError, shielded_digest, static_checks_shielded, store_key
from p2pnode.core.shielded import lock_keys as shielded_lock_keys
from p2pnode.core.validator import OrderError, Validator, static_checks
from p2pnode.crypto import NodeKey, hash256
from p2pnode.errors import DecodeError
from p2pnode.wire.messages import (
    SHIELD,
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
    ShieldedTransfer,
    SyncHeads,
    SyncSummary,
    Vote,
    decode,
)
from p2pnode.wire.types import Address, ChainId, Digest, MsgId, NodeId

PENALTY_LIMIT = 20  # invalid messages from one peer before it is disconnected
PROOF_KEY_TAG = b"p2pnode/proof-key/v1"

AnyOrder = Order | ShieldedOrder
AnyCert = Certificate | ShieldedCertificate
REFUSALS = (OrderError, LedgerError, ShieldedError)


def proof_key(digest: Digest, order: AnyOrder) -> bytes:
    """Names one (statement, proof) pair, for caching verification results."""
    if isinstance(order, Order):
        return hash256(PROOF_KEY_TAG, digest, order.proof)
    return hash256(PROOF_KEY_TAG, digest, order.proof, order.account_proof)


def statement_digest(order: AnyOrder) -> Digest:
    """The name of a payment of either kind: a hash of its statement, never of its proof."""
    return transfer_digest(order.transfer) if isinstance(order, Order) else shielded_digest(order.tx)


@dataclass(frozen=True, slots=True)
class CoreParams:
    gossip: GossipParams = GossipParams()
    pending_orders: int = 20_000
    held_certificates: int = 20_000
    sync_interval: float = 1.0
    sync_batch: int = 256
    certificate_proofs: bool = True


@dataclass(slots=True)
class _Ctx:
    """Why a proof is being verified, and what to do once it is."""

    kind: str  # "order" | "submit" | "cert"
    peer: NodeId | None
    mid: MsgId | None
    data: bytes
    hops: int
    msg: AnyOrder | AnyCert


def short(b: bytes | None) -> str:
    return b.hex()[:16] if b else "client"


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
        byzantine: str = "",
        shielded: bool = False,
    ) -> None:
        self.node_id = NodeId(key.public)
        self.shielded = shielded  # the genesis carries a verifying key for shielded proofs
        self.chain_id = chain_id
        self.params = params
        self.rng = rng or random.Random()
        self.committee = Committee.of(validators)
        self.ledger = Ledger(balances)
        self.validator = (
            Validator(key, chain_id, self.ledger, byzantine) if self.node_id in self.committee else None
        )
        self.router = GossipRouter(params.gossip, self.rng)
        self.votes = VoteBook(chain_id, self.committee, limit=params.pending_orders)
        self.orders: OrderedDict[Digest, AnyOrder] = OrderedDict()  # proof-verified, not yet applied
        # Verification results and work in flight, keyed by statement AND proof (proof_key): a copy of
        # a payment with a broken proof must not condemn the genuine one.
        self.proofs: OrderedDict[bytes, bool] = OrderedDict()
        self.verifying: dict[bytes, list[_Ctx]] = {}
        self.certified: OrderedDict[Digest, None] = OrderedDict()  # valid certificate seen
        self.settled: set[Digest] = set()
        self.certs: dict[tuple[Address, int], bytes] = {}  # applied certificates, for sync
        self.held_certs: dict[tuple[Address, int], tuple[AnyCert, bytes, Digest]] = {}
        self.held_shielded: OrderedDict[Digest, tuple[AnyCert, bytes, Digest]] = OrderedDict()
        self.shielded_certs: dict[Digest, bytes] = {}  # applied shielded certificates, for sync
        self.outputs: list[tuple[bytes, bytes]] = []  # (commitment, memo) in apply order, for wallets
        self.spent_by: dict[bytes, Digest] = {}  # input commitment -> the statement that spent it
        self.held_orders: dict[tuple[Address, int], Digest] = {}
        self.held_shielded_orders: OrderedDict[Digest, None] = OrderedDict()
        self.penalties: dict[NodeId, int] = {}
        self._next_sync = 0.0
        self._first_seen: dict[Digest, float] = {}  # pending orders: when this node first held them

    # == lifecycle ==================================================================================
    def restore(
        self,
        accounts: dict[bytes, tuple[int, int]],
        certs: Iterable[bytes],
        locks: Iterable[tuple[bytes, int, bytes]],
        notes: dict[bytes, bool] | None = None,
    ) -> None:
        """Load persisted state: accounts, applied certificates, notes, and (validators) durable locks."""
        applied: dict[tuple[bytes, int], bytes] = {}
        for raw in certs:
            cert = decode(raw)
            if isinstance(cert, ShieldedCertificate):
                tx = cert.order.tx
                digest = shielded_digest(tx)
                self._note_shielded(tx, digest, raw)
                if tx.kind == 0:  # SHIELD consumed the account's seq
                    applied[(tx.account, tx.seq)] = digest
            else:
                t = cert.order.transfer
                digest = transfer_digest(t)
                applied[(t.sender, t.seq)] = digest
                self.certs[(t.sender, t.seq)] = raw
            self.settled.add(digest)
        if accounts or applied or notes:
            merged: dict[bytes, tuple[int, int]] = {
                a: (acct.balance, acct.next_seq) for a, acct in self.ledger.accounts.items()
            }
            merged.update(accounts)  # persisted accounts overlay genesis
            self.ledger.restore(merged, applied, notes)
        if self.validator is not None and self.validator.byzantine != "forget_locks":
            for sender, seq, lock_digest in locks:
                self.validator.locks[(Address(sender), seq)] = Digest(lock_digest)
                self.validator.durable.add(Digest(lock_digest))

    def status(self) -> dict[str, Any]:
        return {
            "applied": len(self.settled),
            "root": self.ledger.root().hex(),
            "accounts": len(self.ledger.accounts),
            "held_certificates": len(self.held_certs),
            "held_orders": len(self.held_orders),
            "notes": len(self.ledger.notes),
            "shielded_applied": len(self.shielded_certs),
            "verifying": len(self.verifying),
            "gossip": self.router.stats.as_dict(),
        }

    # == peers ======================================================================================
    def on_peer_connected(self, now: float, peer: NodeId) -> list[Effect]:
        self.router.add_peer(peer)
        return [Send(peer, SyncSummary(root=self.ledger.root(), applied=self.ledger.applied_count()))]

    def on_peer_neighbors(self, peer: NodeId, neighbors: Iterable[bytes]) -> None:
        """``peer`` told us its peers (peer exchange); gossip uses it to avoid duplicate pushes."""
        self.router.set_neighbors(peer, frozenset(NodeId(n) for n in neighbors))

    def on_peer_disconnected(self, now: float, peer: NodeId) -> list[Effect]:
        self.router.remove_peer(peer)
        return []

    def on_message(self, now: float, peer: NodeId, msg: Message) -> list[Effect]:
        """A decoded peer message (handshake, ping and peer exchange are the driver's)."""
        if isinstance(msg, Gossip):
            return self._on_gossip(now, peer, msg)
        if isinstance(msg, IHave):
            return list(self.router.on_ihave(now, peer, msg.ids))
        if isinstance(msg, IWant):
            return list(self.router.on_iwant(now, peer, msg.ids))
        if isinstance(msg, SyncSummary):
            if msg.root != self.ledger.root():
                out_sync: list[Effect] = [Send(peer, SyncHeads(heads=tuple(self.ledger.heads()), reply=True))]
                if self.shielded:
                    out_sync.append(Send(peer, ShieldedHave(digests=tuple(self.shielded_certs), reply=True)))
                return out_sync
            return []
        if isinstance(msg, ShieldedHave):
            return self._on_shielded_have(peer, msg)
        if isinstance(msg, SyncHeads):
            return self._on_heads(peer, msg)
        if isinstance(msg, CertRequest):
            found = [self.certs[(Address(a), s)] for a, s in msg.items if (Address(a), s) in self.certs]
            return [Send(peer, CertBatch(certs=tuple(found)))] if found else []
        if isinstance(msg, CertBatch):
            out: list[Effect] = []
            for raw in msg.certs:
                try:
                    cert = decode(raw)
                except DecodeError as exc:
                    out += self._reject(peer, "certificate", str(exc))
                    continue
                if not isinstance(cert, (Certificate, ShieldedCertificate)):
                    out += self._reject(peer, "certificate", f"{type(cert).__name__} in a CertBatch")
                    continue
                out += self._on_certificate(now, peer, None, raw, 0, cert)
            return out
        return self._reject(peer, type(msg).__name__, "unexpected message")

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
        return out

    # == gossip =====================================================================================
    def _on_gossip(self, now: float, peer: NodeId, msg: Gossip) -> list[Effect]:
        mid, new = self.router.receive(now, peer, msg.data)
        if not new:
            return []
        try:
            inner = decode(msg.data)
        except DecodeError as exc:
            return self._reject(peer, "gossip", str(exc))
        if isinstance(inner, (Order, ShieldedOrder)):
            return self._on_order(now, _Ctx("order", peer, mid, msg.data, msg.hops, inner))
        if isinstance(inner, Vote):
            return self._on_vote(now, peer, mid, msg.data, msg.hops, inner)
        if isinstance(inner, (Certificate, ShieldedCertificate)):
            return self._on_certificate(now, peer, mid, msg.data, msg.hops, inner)
        return self._reject(peer, "gossip", f"{type(inner).__name__} is not gossiped")

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = list(self.router.tick(now))
        if now >= self._next_sync and self.router.peers:
            self._next_sync = now + self.params.sync_interval
            peer = self.rng.choice(self.router.peers)
            out.append(Send(peer, SyncSummary(root=self.ledger.root(), applied=self.ledger.applied_count())))
            out += self._repush_pending(now, peer)
        return out

    def _repush_pending(self, now: float, peer: NodeId) -> list[Effect]:
        """Anti-entropy for payments in flight: orders still without a certificate after a sync
        period, and the votes we hold for them, go again to one peer. Certificates repair themselves
        (SyncHeads), but votes gathered on two sides of a healed partition would otherwise never meet.
        Receivers drop what they have seen by id; bounded per tick."""
        out: list[Effect] = []
        stale_before = now - self.params.sync_interval
        for digest, (order, since) in list(self._pending_since(now).items())[: self.params.sync_batch // 4]:
            if since > stale_before or digest in self.certified or digest in self.settled:
                continue
            out.append(Send(peer, Gossip(data=order.encode(), hops=1)))
            for validator, signature in self.votes.signatures(digest):
                vote = Vote(digest=digest, validator=NodeId(validator), signature=signature)
                out.append(Send(peer, Gossip(data=vote.encode(), hops=1)))
        return out

    def _pending_since(self, now: float) -> dict[Digest, tuple[AnyOrder, float]]:
        for digest in self.orders:
            self._first_seen.setdefault(digest, now)
        for digest in [d for d in self._first_seen if d not in self.orders]:
            del self._first_seen[digest]
        return {d: (o, self._first_seen[d]) for d, o in self.orders.items()}

    # == orders =====================================================================================
    def _admit(self, order: AnyOrder) -> str | None:
        """Cheap checks before a proof is verified. Raises a refusal; returns a reason to ignore the
        order without penalty (it is settled already), or None to go on."""
        if isinstance(order, Order):
            t = order.transfer
            static_checks(order, self.chain_id)
            self.ledger.check_sender(t)
            return "already settled" if t.seq < self.ledger.next_seq(t.sender) else None
        if not self.shielded:
            raise ShieldedError("shielded payments are not enabled on this chain")
        static_checks_shielded(order, self.chain_id)
        tx = order.tx
        if tx.kind == SHIELD:
            if tx.account not in self.ledger.accounts:
                raise ShieldedError(f"unknown account {tx.account.hex()}")
            if tx.seq < self.ledger.next_seq(tx.account):
                return "already settled"
        if any(self.ledger.notes.get(c) for c in tx.inputs):
            return "input already spent"
        return None

    def on_submit(self, now: float, order: AnyOrder) -> list[Effect]:
        """A client handed us an order. Ends, now or after verification, with one OrderOutcome."""
        digest = statement_digest(order)
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
        try:
            if digest not in self.settled:
                stale = self._admit(order)
                if stale is not None:
                    raise OrderError(stale if isinstance(order, ShieldedOrder) else "seq too low")
                self._client_state_checks(order)
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
                out += self.router.publish(now, self.orders[digest].encode())  # a client retry: push again
            out.append(OrderOutcome(digest, True))
            return out
        data = order.encode()
        mid, new = self.router.receive(now, None, data)
        return out + self._on_order(now, _Ctx("submit", None, mid if new else None, data, 0, order))

    def _client_state_checks(self, order: AnyOrder) -> None:
        """What a client should hear about now rather than wait for: overspends, spent notes."""
        if isinstance(order, Order):
            t = order.transfer
            if t.seq == self.ledger.next_seq(t.sender):
                self.ledger.check_funds(t)
            return
        try:
            self.ledger.check_shielded(order.tx)
        except (SeqTooHigh, UnknownNote):
            pass  # its predecessors may still be on their way: accept and hold

    def _on_order(self, now: float, ctx: _Ctx) -> list[Effect]:
        order = ctx.msg
        assert isinstance(order, (Order, ShieldedOrder))
        digest = statement_digest(order)
        out: list[Effect] = [
            Emit("order_received", {"tx": digest.hex(), "hops": ctx.hops, "peer": short(ctx.peer)})
        ]
        try:
            stale = self._admit(order)
        except REFUSALS as exc:
            return out + self._reject(ctx.peer, "order", str(exc), digest)
        if stale is not None:
            out.append(Emit("order_ignored", {"tx": digest.hex(), "reason": stale}))
            return out
        pkey = proof_key(digest, order)
        known = self.proofs.get(pkey)
        if known is True:
            return out + self._order_valid(now, ctx, digest)
        if known is False:
            return out + self._bad_proof(ctx, digest)
        waiting = self.verifying.get(pkey)
        if waiting is not None:
            waiting.append(ctx)
            return out
        if len(self.verifying) >= self.params.pending_orders:
            out.append(Emit("order_ignored", {"tx": digest.hex(), "reason": "verification queue full"}))
            if ctx.kind == "submit":
                out.append(OrderOutcome(digest, False, "node overloaded, try again"))
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
                    out += self._bad_proof(ctx, digest)
                elif ctx.kind == "cert":
                    assert isinstance(ctx.msg, (Certificate, ShieldedCertificate))
                    out += self._certificate_valid(
                        now, ctx.peer, ctx.mid, ctx.data, ctx.hops, ctx.msg, digest
                    )
                else:
                    out += self._order_valid(now, ctx, digest)
        return out

    def _reject_cert(
        self, peer: NodeId | None, mid: MsgId | None, reason: str, digest: Digest
    ) -> list[Effect]:
        if mid is not None:
            self.router.forget(mid)  # a certificate's id names its statement: let a valid one through
        return self._reject(peer, "certificate", reason, digest)

    def _bad_proof(self, ctx: _Ctx, digest: Digest) -> list[Effect]:
        if ctx.kind == "cert":
            return self._reject_cert(ctx.peer, ctx.mid, "proof does not verify", digest)
        out = self._reject(ctx.peer, "order", "proof does not verify", digest)
        if ctx.kind == "submit":
            out.append(Emit("order_refused", {"tx": digest.hex(), "reason": "proof does not verify"}))
            out.append(OrderOutcome(digest, False, "proof does not verify"))
        return out

    def _order_valid(self, now: float, ctx: _Ctx, digest: Digest) -> list[Effect]:
        order = ctx.msg
        assert isinstance(order, (Order, ShieldedOrder))
        out: list[Effect] = []
        if digest not in self.settled and digest not in self.orders:
            self.orders[digest] = order
            while len(self.orders) > self.params.pending_orders:
                self.orders.popitem(last=False)
        if ctx.mid is not None:
            if ctx.kind == "submit":
                out += self.router.publish(now, ctx.data)
            else:
                out += self.router.forward(now, ctx.mid, ctx.data, ctx.hops, ctx.peer)
        if ctx.kind == "submit":
            out.append(OrderOutcome(digest, True))
        out += self._try_vote(order, digest)
        out += self._maybe_certify(now, digest)
        return out

    def _try_vote(self, order: AnyOrder, digest: Digest) -> list[Effect]:
        v = self.validator
        if v is None or digest in self.settled:
            return []
        if isinstance(order, ShieldedOrder):
            return self._try_vote_shielded(v, order, digest)
        t = order.transfer
        try:
            v.check(order, digest)
        except SeqTooLow:
            return []
        except (SeqTooHigh, LedgerError) as exc:
            # Predecessors or credits missing: wait for them (bounded), retried on each apply.
            if len(self.held_orders) < self.params.pending_orders:
                self.held_orders[(t.sender, t.seq)] = digest
            return [Emit("vote_deferred", {"tx": digest.hex(), "reason": str(exc)})]
        except OrderError as exc:
            return [Emit("vote_refused", {"tx": digest.hex(), "reason": str(exc)})]
        if v.lock(order, digest):
            return [PersistLock(((t.sender, t.seq),), digest, order.encode())]
        return []

    def _try_vote_shielded(self, v: Validator, order: ShieldedOrder, digest: Digest) -> list[Effect]:
        try:
            v.check_shielded(order, digest)
        except SeqTooLow:
            return []
        except (SeqTooHigh, UnknownNote, LedgerError) as exc:
            if len(self.held_shielded_orders) < self.params.pending_orders:
                self.held_shielded_orders[digest] = None
            return [Emit("vote_deferred", {"tx": digest.hex(), "reason": str(exc)})]
        except (OrderError, ShieldedError) as exc:
            return [Emit("vote_refused", {"tx": digest.hex(), "reason": str(exc)})]
        keys = shielded_lock_keys(order.tx)
        if v.lock_keys(keys, digest):
            return [PersistLock(keys, digest, order.encode())]
        return []

    def on_lock_persisted(self, now: float, digest: Digest) -> list[Effect]:
        """The driver made the lock for ``digest`` durable: sign and publish the vote."""
        v = self.validator
        if v is None:
            return []
        v.durable.add(digest)
        vote = v.vote(digest)
        if vote is None:
            return []
        order = self.orders.get(digest)
        fields: dict[str, Any] = {"tx": digest.hex()}
        if isinstance(order, Order):
            fields.update(seq=order.transfer.seq, sender=order.transfer.sender.hex())
        elif order is not None:
            fields.update(seq=order.tx.seq, sender=order.tx.account.hex())
        out: list[Effect] = [Emit("vote_sent", fields)]
        out += self.router.publish(now, vote.encode())
        self.votes.add(vote)
        out += self._maybe_certify(now, digest)
        return out

    # == votes and certificates =====================================================================
    def _on_vote(
        self, now: float, peer: NodeId, mid: MsgId, data: bytes, hops: int, vote: Vote
    ) -> list[Effect]:
        out: list[Effect] = [
            Emit("vote_received", {"tx": vote.digest.hex(), "validator": short(vote.validator), "hops": hops})
        ]
        if not self.votes.add(vote):
            return out + self._reject(
                peer, "vote", "vote signature invalid or signer not a validator", vote.digest
            )
        out += self.router.forward(now, mid, data, hops, peer)
        out += self._maybe_certify(now, vote.digest)
        return out

    def _maybe_certify(self, now: float, digest: Digest) -> list[Effect]:
        if digest in self.certified or digest in self.settled:
            return []
        order = self.orders.get(digest)
        if order is None:
            return []
        cert = self.votes.assemble(order, digest)
        if cert is None:
            return []
        self._mark_certified(digest)
        data = cert.encode()
        out: list[Effect] = [Emit("certificate_formed", {"tx": digest.hex(), "votes": len(cert.signatures)})]
        self.router.receive(now, None, data)
        self.router.announce(now, data)  # peers that saw the votes hold this id already
        out += self._apply_or_hold(now, None, cert, data, digest)
        return out

    def _mark_certified(self, digest: Digest) -> None:
        self.certified[digest] = None
        while len(self.certified) > 4 * self.params.pending_orders:
            self.certified.popitem(last=False)

    def _on_certificate(
        self, now: float, peer: NodeId | None, mid: MsgId | None, data: bytes, hops: int, cert: AnyCert
    ) -> list[Effect]:
        order = cert.order
        digest = statement_digest(order)
        if digest in self.certified or digest in self.settled:
            return []  # another assembly of a certificate we hold: nothing new, not forwarded
        out: list[Effect] = [
            Emit("certificate_received", {"tx": digest.hex(), "hops": hops, "peer": short(peer)})
        ]
        conflict = self._conflicting(order, digest)
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

    def _conflicting(self, order: AnyOrder, digest: Digest) -> Digest | None:
        """The digest of an applied certificate that this one contradicts (same (sender, seq), or a
        shared input note), if any: evidence of more than f Byzantine validators."""
        if isinstance(order, Order):
            t = order.transfer
            existing = self.ledger.applied.get((t.sender, t.seq))
            return existing if existing is not None and existing != digest else None
        tx = order.tx
        if tx.kind == SHIELD:
            existing = self.ledger.applied.get((tx.account, tx.seq))
            if existing is not None and existing != digest:
                return existing
        for c in tx.inputs:
            spender = self.spent_by.get(c)
            if spender is not None and spender != digest:
                return spender
        return None

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
        self._mark_certified(digest)
        out: list[Effect] = []
        if mid is not None:
            out += self.router.forward(now, mid, data, hops, peer)
        return out + self._apply_or_hold(now, peer, cert, data, digest)

    # == application ================================================================================
    def _apply_or_hold(
        self, now: float, peer: NodeId | None, cert: AnyCert, data: bytes, digest: Digest
    ) -> list[Effect]:
        out: list[Effect] = []
        work: list[tuple[AnyCert, bytes, Digest]] = [(cert, data, digest)]
        while work:
            cert, data, digest = work.pop()
            if isinstance(cert, ShieldedCertificate):
                out += self._apply_or_hold_shielded(cert, data, digest, work)
                continue
            t = cert.order.transfer
            try:
                self.ledger.check(t)
            except SeqTooLow:
                continue
            except LedgerError as exc:
                key = (t.sender, t.seq)
                if key not in self.held_certs and len(self.held_certs) < self.params.held_certificates:
                    self.held_certs[key] = (cert, data, digest)
                    out.append(Emit("certificate_held", {"tx": digest.hex(), "reason": str(exc)}))
                if isinstance(exc, SeqTooHigh) and peer is not None:
                    start = self.ledger.next_seq(t.sender)
                    items = tuple(
                        (t.sender, s) for s in range(start, min(t.seq, start + self.params.sync_batch))
                    )
                    out.append(Send(peer, CertRequest(items=items)))
                continue
            self.ledger.apply(t, digest)
            self.certs[(t.sender, t.seq)] = data
            locks: tuple[tuple[bytes, int], ...] = ((t.sender, t.seq),)
            out += self._applied(
                digest, data, (t.sender, t.seq), (t.sender, t.recipient), (), locks, t.amount
            )
            out += self._unblocked((t.sender, t.recipient), work)
        return out

    def _apply_or_hold_shielded(
        self,
        cert: ShieldedCertificate,
        data: bytes,
        digest: Digest,
        work: list[tuple[AnyCert, bytes, Digest]],
    ) -> list[Effect]:
        tx = cert.order.tx
        try:
            self.ledger.check_shielded(tx)
        except SeqTooLow:
            return []
        except (SeqTooHigh, UnknownNote, LedgerError) as exc:
            if digest not in self.held_shielded and len(self.held_shielded) < self.params.held_certificates:
                self.held_shielded[digest] = (cert, data, digest)
                return [Emit("certificate_held", {"tx": digest.hex(), "reason": str(exc)})]
            return []
        touched = self.ledger.apply_shielded(tx, digest)
        self._note_shielded(tx, digest, data)
        if tx.kind == SHIELD:
            self.certs[(tx.account, tx.seq)] = data
        notes = tuple((c, True) for c in tx.inputs) + tuple((c, False) for c in tx.outputs)
        out = self._applied(
            digest,
            data,
            store_key(tx),
            tuple(touched),
            notes,
            shielded_lock_keys(tx),
            tx.public_in + tx.public_out,
        )
        out += self._unblocked(tuple(touched), work)
        # New notes may be the inputs that held certificates and orders were waiting for.
        for held_digest in list(self.held_shielded):
            work.append(self.held_shielded.pop(held_digest))
        for held_order in list(self.held_shielded_orders):
            del self.held_shielded_orders[held_order]
            waiting = self.orders.get(held_order)
            if waiting is not None:
                out += self._try_vote(waiting, held_order)
        return out

    def _note_shielded(self, tx: ShieldedTransfer, digest: Digest, raw: bytes) -> None:
        self.shielded_certs[digest] = raw
        for c in tx.inputs:
            self.spent_by[c] = digest
        self.outputs.extend(zip(tx.outputs, tx.memos, strict=True))

    def _unblocked(self, addrs: tuple[bytes, ...], work: list[tuple[AnyCert, bytes, Digest]]) -> list[Effect]:
        """After an apply: the accounts' next seqs and pending debits may now go ahead."""
        out: list[Effect] = []
        for addr in addrs:
            nxt: tuple[Address, int] = (Address(addr), self.ledger.next_seq(addr))
            held = self.held_certs.pop(nxt, None)
            if held is not None:
                work.append(held)
            held_order = self.held_orders.pop(nxt, None)
            if held_order is not None and held_order in self.orders:
                out += self._try_vote(self.orders[held_order], held_order)
        return out

    def _applied(
        self,
        digest: Digest,
        data: bytes,
        key: tuple[bytes, int],
        touched: tuple[bytes, ...],
        notes: tuple[tuple[bytes, bool], ...],
        locks: tuple[tuple[bytes, int], ...],
        amount: int,
    ) -> list[Effect]:
        self.settled.add(digest)
        self.orders.pop(digest, None)
        self.votes.forget(digest)
        if self.validator is not None:
            self.validator.release_keys(locks)
        accounts = tuple(
            (a, self.ledger.accounts[Address(a)].balance, self.ledger.accounts[Address(a)].next_seq)
            for a in dict.fromkeys(touched)
        )
        root = self.ledger.root()
        # The log line first (it describes the in-memory state that status already reports), then
        # durability, then the acknowledgement to waiting clients.
        return [
            Emit(
                "certificate_applied",
                {
                    "tx": digest.hex(),
                    "sender": key[0].hex() if key[1] >= 0 else "shielded",
                    "seq": key[1],
                    "amount": amount,
                    "root": root.hex(),
                    "applied": len(self.settled),
                },
            ),
            PersistApplied(key, data, digest, accounts, notes, locks),
            Settled(digest),
        ]

    def _on_shielded_have(self, peer: NodeId, msg: ShieldedHave) -> list[Effect]:
        theirs = set(msg.digests)
        missing = [raw for d, raw in self.shielded_certs.items() if d not in theirs][: self.params.sync_batch]
        out: list[Effect] = []
        if missing:
            out.append(Send(peer, CertBatch(certs=tuple(missing))))
        if msg.reply and not theirs <= set(self.shielded_certs):
            out.append(Send(peer, ShieldedHave(digests=tuple(self.shielded_certs), reply=False)))
        return out

    # == anti-entropy ===============================================================================
    def _on_heads(self, peer: NodeId, msg: SyncHeads) -> list[Effect]:
        theirs = {Address(a): s for a, s in msg.heads}
        mine = self.ledger.heads()
        found: list[bytes] = []
        budget = self.params.sync_batch
        for addr, my_next in mine:
            their_next = theirs.get(Address(addr), 0)
            s = their_next
            while s < my_next and len(found) < budget:
                raw = self.certs.get((Address(addr), s))
                if raw is not None:
                    found.append(raw)
                s += 1
            if len(found) >= budget:
                break
        out: list[Effect] = []
        if found:
            out.append(Send(peer, CertBatch(certs=tuple(found))))
        if msg.reply and any(s > self.ledger.next_seq(a) for a, s in theirs.items()):
            out.append(Send(peer, SyncHeads(heads=tuple(mine), reply=False)))
        return out
