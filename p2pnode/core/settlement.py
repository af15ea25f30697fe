"""Applied state: the ledger, the certificates applied to it, those held back, and what sync and
wallets read from them.

``Settlement.apply_or_hold`` is the one place a certificate changes the ledger. A certificate that
cannot apply yet (earlier seqs or credits missing, input notes not yet created) is held, bounded;
every apply retries what it may have unblocked. The caller (``NodeCore``) learns what was applied
and which (account, seq) keys may now go ahead, and does the protocol bookkeeping (locks, votes,
pending orders) itself.

Durable before visible: applying changes the working state (``ledger``, ``settled``), which the
protocol needs at once (the next seq of an account, sync answers). What clients observe lives in
``visible``, a :class:`DurableView` that moves forward only when the driver reports the commits of
applied certificates durable (``on_durable``), in apply order. Peers may be served working state: a
certificate proves itself and promises nothing; a client's "settled" is a promise.

Anti-entropy answers live here too, because they read only applied certificates:
``SyncHeads`` → the certificates a peer lacks per account; ``ShieldedHave`` → the shielded
certificates it lacks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pnode.core.effects import Effect, Emit, PersistApplied, Send, Settled
from p2pnode.core.ledger import Ledger, LedgerError, SeqTooHigh, SeqTooLow
from p2pnode.core.payments import AnyCert, AnyOrder, transfer_digest
from p2pnode.core.shielded import lock_keys as shielded_lock_keys
from p2pnode.core.shielded import shielded_digest, store_key
from p2pnode.wire.messages import (
    SHIELD,
    CertBatch,
    CertRequest,
    IHave,
    IWant,
    Message,
    Order,
    ShieldedCertificate,
    ShieldedHave,
    ShieldedTransfer,
    SyncHeads,
    decode,
)
from p2pnode.wire.types import Address, Digest, NodeId


@dataclass(slots=True)
class Outcome:
    """What one ``apply_or_hold`` did, for the caller's bookkeeping."""

    effects: list[Effect] = field(default_factory=list)
    applied: list[tuple[Digest, tuple[tuple[bytes, int], ...]]] = field(default_factory=list)  # + lock keys
    unblocked: list[tuple[Address, int]] = field(default_factory=list)  # (account, its next seq)
    notes_changed: bool = False


@dataclass(slots=True)
class DurableView:
    """The state clients may observe: a prefix of the applied sequence whose commits returned.

    Invariant: every field describes the same durable prefix; ``root`` is the working root as it was
    right after the last durable apply, so it equals a restored node's root."""

    settled: set[Digest] = field(default_factory=set)
    accounts: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # address -> (balance, next_seq)
    notes: dict[bytes, bool] = field(default_factory=dict)  # commitment -> spent
    root: bytes = b""
    applied: int = 0  # certificates
    outputs: int = 0  # shielded outputs (a prefix of Settlement.outputs)
    shielded_applied: int = 0
    last: int = 0  # apply index of the last durable apply

    def account(self, addr: bytes) -> tuple[int, int] | None:
        """(balance, next_seq), or None for an account this chain does not know."""
        return self.accounts.get(addr)


class Settlement:
    """Invariants: ``settled`` holds exactly the digests applied to ``ledger``; held certificates are
    valid ones (checked by the caller) that do not apply yet; every container is bounded."""

    def __init__(self, ledger: Ledger, *, held_limit: int, sync_batch: int) -> None:
        self.ledger = ledger
        self.held_limit = held_limit
        self.sync_batch = sync_batch
        self.settled: set[Digest] = set()
        self.certs: dict[tuple[Address, int], bytes] = {}  # applied, by (account, seq): for sync
        self.held_certs: dict[tuple[Address, int], tuple[AnyCert, bytes, Digest]] = {}
        self.held_shielded: OrderedDict[Digest, tuple[AnyCert, bytes, Digest]] = OrderedDict()
        self.shielded_certs: dict[Digest, bytes] = {}  # applied shielded certificates: for sync
        self.outputs: list[tuple[bytes, bytes]] = []  # (commitment, memo) in apply order: for wallets
        self.spent_by: dict[bytes, Digest] = {}  # input commitment -> the statement that spent it
        self.visible = DurableView()
        self._applies = 0  # apply index: PersistApplied.index, 1, 2, ... in apply order
        self._sync_visible()

    def _sync_visible(self) -> None:
        """Make the visible state equal the working state (at start: nothing is in flight)."""
        v = self.visible
        v.settled = set(self.settled)
        v.accounts = {a: (acct.balance, acct.next_seq) for a, acct in self.ledger.accounts.items()}
        v.notes = dict(self.ledger.notes)
        v.root = self.ledger.root()
        v.applied = len(self.settled)
        v.outputs = len(self.outputs)
        v.shielded_applied = len(self.shielded_certs)
        v.last = self._applies

    # -- restore -------------------------------------------------------------------------------------
    def restore(
        self, accounts: dict[bytes, tuple[int, int]], certs: Iterable[bytes], notes: dict[bytes, bool] | None
    ) -> None:
        applied: dict[tuple[bytes, int], bytes] = {}
        for raw in certs:
            cert = decode(raw)
            if isinstance(cert, ShieldedCertificate):
                tx = cert.order.tx
                digest = shielded_digest(tx)
                self._note_shielded(tx, digest, raw)
                if tx.kind == SHIELD:  # a shield consumed the account's seq
                    applied[(tx.account, tx.seq)] = digest
                    self.certs[(tx.account, tx.seq)] = raw
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
        self._sync_visible()  # what was loaded is durable by definition

    def on_durable(self, writes: Iterable[PersistApplied]) -> list[Effect]:
        """The commits of these applied certificates returned, in apply order: make them visible.

        Returns one ``Settled`` per certificate, for waiting clients. Writes must arrive in apply
        order (the driver commits in the order it was handed them); anything else is our bug."""
        v = self.visible
        out: list[Effect] = []
        for w in writes:
            if w.index != v.last + 1:
                raise AssertionError(f"durable apply {w.index} out of order (last {v.last})")
            v.last = w.index
            v.settled.add(w.digest)
            for a, balance, next_seq in w.accounts:
                v.accounts[a] = (balance, next_seq)
            v.notes.update(w.notes)
            v.root, v.applied, v.outputs, v.shielded_applied = w.root, w.applied, w.outputs, w.shielded
            out.append(Settled(w.digest))
        return out

    # -- checks --------------------------------------------------------------------------------------
    def conflicting(self, order: AnyOrder, digest: Digest) -> Digest | None:
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

    # -- application ---------------------------------------------------------------------------------
    def apply_or_hold(self, peer: NodeId | None, cert: AnyCert, data: bytes, digest: Digest) -> Outcome:
        """Apply ``cert`` (already checked) and everything it unblocks, or hold it."""
        out = Outcome()
        work: list[tuple[AnyCert, bytes, Digest]] = [(cert, data, digest)]
        while work:
            cert, data, digest = work.pop()
            if isinstance(cert, ShieldedCertificate):
                self._shielded(cert, data, digest, work, out)
                continue
            t = cert.order.transfer
            try:
                self.ledger.check(t)
            except SeqTooLow:
                continue
            except LedgerError as exc:
                key = (t.sender, t.seq)
                if key not in self.held_certs and len(self.held_certs) < self.held_limit:
                    self.held_certs[key] = (cert, data, digest)
                    out.effects.append(Emit("certificate_held", {"tx": digest.hex(), "reason": str(exc)}))
                if isinstance(exc, SeqTooHigh) and peer is not None:
                    start = self.ledger.next_seq(t.sender)
                    items = tuple((t.sender, s) for s in range(start, min(t.seq, start + self.sync_batch)))
                    out.effects.append(Send(peer, CertRequest(items=items)))
                continue
            self.ledger.apply(t, digest)
            self.certs[(t.sender, t.seq)] = data
            key = (t.sender, t.seq)
            self._applied(out, digest, data, key, (t.sender, t.recipient), (), (key,), t.amount)
            self._unblocked((t.sender, t.recipient), work, out)
        return out

    def _shielded(
        self,
        cert: ShieldedCertificate,
        data: bytes,
        digest: Digest,
        work: list[tuple[AnyCert, bytes, Digest]],
        out: Outcome,
    ) -> None:
        tx = cert.order.tx
        try:
            self.ledger.check_shielded(tx)
        except SeqTooLow:
            return
        except LedgerError as exc:  # SeqTooHigh, UnknownNote, funds: wait for what is missing
            if digest not in self.held_shielded and len(self.held_shielded) < self.held_limit:
                self.held_shielded[digest] = (cert, data, digest)
                out.effects.append(Emit("certificate_held", {"tx": digest.hex(), "reason": str(exc)}))
            return
        touched = self.ledger.apply_shielded(tx, digest)
        self._note_shielded(tx, digest, data)
        if tx.kind == SHIELD:
            self.certs[(tx.account, tx.seq)] = data
        notes = tuple((c, True) for c in tx.inputs) + tuple((c, False) for c in tx.outputs)
        amount = tx.public_in + tx.public_out
        self._applied(out, digest, data, store_key(tx), tuple(touched), notes, shielded_lock_keys(tx), amount)
        self._unblocked(tuple(touched), work, out)
        out.notes_changed = True
        # New notes may be the inputs that held certificates were waiting for.
        for held_digest in list(self.held_shielded):
            work.append(self.held_shielded.pop(held_digest))

    def _note_shielded(self, tx: ShieldedTransfer, digest: Digest, raw: bytes) -> None:
        self.shielded_certs[digest] = raw
        for c in tx.inputs:
            self.spent_by[c] = digest
        self.outputs.extend(zip(tx.outputs, tx.memos, strict=True))

    def _unblocked(
        self, addrs: tuple[bytes, ...], work: list[tuple[AnyCert, bytes, Digest]], out: Outcome
    ) -> None:
        """After an apply: the accounts' next seqs and pending debits may now go ahead."""
        for addr in addrs:
            nxt = (Address(addr), self.ledger.next_seq(addr))
            held = self.held_certs.pop(nxt, None)
            if held is not None:
                work.append(held)
            out.unblocked.append(nxt)

    def _applied(
        self,
        out: Outcome,
        digest: Digest,
        data: bytes,
        key: tuple[bytes, int],
        touched: tuple[bytes, ...],
        notes: tuple[tuple[bytes, bool], ...],
        locks: tuple[tuple[bytes, int], ...],
        amount: int,
    ) -> None:
        self.settled.add(digest)
        accounts = tuple(
            (a, self.ledger.accounts[Address(a)].balance, self.ledger.accounts[Address(a)].next_seq)
            for a in dict.fromkeys(touched)
        )
        # The log line describes the working state at once (the latency tools time the apply); what
        # clients see changes only when the commit returns (``on_durable``).
        fields = {
            "tx": digest.hex(),
            "sender": key[0].hex() if key[1] >= 0 else "shielded",
            "seq": key[1],
            "amount": amount,
            "root": self.ledger.root().hex(),
            "applied": len(self.settled),
        }
        self._applies += 1
        write = PersistApplied(
            key,
            data,
            digest,
            accounts,
            notes,
            locks,
            index=self._applies,
            root=self.ledger.root(),
            applied=len(self.settled),
            outputs=len(self.outputs),
            shielded=len(self.shielded_certs),
        )
        out.effects += [Emit("certificate_applied", fields), write]
        out.applied.append((digest, locks))

    # -- anti-entropy answers ------------------------------------------------------------------------
    def request_heads(self) -> tuple[tuple[bytes, int], ...]:
        """What this node names when it asks a peer for certificates: every account it knows, with
        its next seq (accounts that never sent included, at 0). A peer answers only for accounts
        named (docs/dos.md, "Sync replies"), so a node that lacks everything still names what it
        lacks; an account it does not know yet is named once a credit to it applied."""
        return tuple((a, acct.next_seq) for a, acct in sorted(self.ledger.accounts.items()))

    def heads_reply(self, peer: NodeId, msg: SyncHeads, budget: int | None = None) -> list[Effect]:
        """Answer a ``SyncHeads``: the certificates the peer lacks **for the accounts it names**, from
        the seq it names, account by account in seq order, at most ``sync_batch`` of them and at most
        ``budget`` bytes (None: no byte bound). What is left is sent after its next request. An
        account it does not name gets nothing: an empty request buys nothing.

        With ``reply`` and a named account ahead of this node, our own heads follow (a request of
        ours), if they fit in what is left of ``budget``."""
        left = None if budget is None else budget - BATCH_OVERHEAD
        found: list[bytes] = []
        named: set[bytes] = set()
        for addr, s in msg.heads:
            if addr in named:  # named twice: answered once
                continue
            named.add(addr)
            my_next = self.ledger.next_seq(addr)
            while s < my_next and len(found) < self.sync_batch:
                raw = self.certs.get((Address(addr), s))
                if raw is not None:
                    if left is not None and len(raw) + CERT_OVERHEAD > left:
                        break
                    found.append(raw)
                    if left is not None:
                        left -= len(raw) + CERT_OVERHEAD
                s += 1
            if len(found) >= self.sync_batch or (left is not None and s < my_next):
                break
        out: list[Effect] = []
        if found:
            out.append(Send(peer, CertBatch(certs=tuple(found))))
        if msg.reply and any(s > self.ledger.next_seq(a) for a, s in msg.heads):
            counter = SyncHeads(heads=self.request_heads(), reply=False)
            if left is None or wire_size(counter) <= left:
                out.append(Send(peer, counter))
        return out

    def shielded_have_reply(self, peer: NodeId, msg: ShieldedHave, budget: int | None = None) -> list[Effect]:
        """Answer a ``ShieldedHave``: the shielded certificates beyond the digests it names, at most
        ``sync_batch`` and ``budget`` bytes (None: no byte bound); with ``reply``, ours if it fits."""
        theirs = set(msg.digests)
        left = None if budget is None else budget - BATCH_OVERHEAD
        missing: list[bytes] = []
        for d, raw in self.shielded_certs.items():
            if d in theirs:
                continue
            if len(missing) >= self.sync_batch or (left is not None and len(raw) + CERT_OVERHEAD > left):
                break
            missing.append(raw)
            if left is not None:
                left -= len(raw) + CERT_OVERHEAD
        out: list[Effect] = []
        if missing:
            out.append(Send(peer, CertBatch(certs=tuple(missing))))
        if msg.reply and not theirs <= set(self.shielded_certs):
            counter = ShieldedHave(digests=tuple(self.shielded_certs), reply=False)
            if left is None or wire_size(counter) <= left:
                out.append(Send(peer, counter))
        return out


FRAME_HEADER = 4  # the length prefix of every frame (p2pnode.wire.codec)
BATCH_OVERHEAD = FRAME_HEADER + 8  # a CertBatch's frame header, tag and list header, at most
CERT_OVERHEAD = 5  # msgpack header of one certificate's bytes in a CertBatch, at most


def wire_size(msg: Message) -> int:
    """Bytes ``msg`` takes on the wire, its frame header included."""
    if isinstance(msg, CertBatch):
        # Each certificate's bytes plus at most 5 bytes of msgpack header; no re-encoding needed.
        return BATCH_OVERHEAD + sum(len(c) + CERT_OVERHEAD for c in msg.certs)
    if isinstance(msg, (IHave, IWant)):
        # [tag, [ids]]: array and tag 1 byte each, the id list's header 1 byte (under 16) or 3, then
        # each 32-byte id as bin 8 (2 + 32). Exact (pinned against encode by a test), and the most
        # frequent peer message, so it is not encoded just to be measured.
        n = len(msg.ids)
        return FRAME_HEADER + 2 + (1 if n < 16 else 3) + 34 * n
    if isinstance(msg, (SyncHeads, CertRequest)):
        # [tag, [[address, seq], ...](, reply)]: each pair is a fixarray, a 20-byte bin 8 and a uint.
        pairs = msg.heads if isinstance(msg, SyncHeads) else msg.items
        n = len(pairs)
        body = sum(23 + _uint_size(seq) for _, seq in pairs)
        return (
            FRAME_HEADER + 2 + (1 if n < 16 else 3 if n < 65536 else 5) + body + (isinstance(msg, SyncHeads))
        )
    return FRAME_HEADER + len(msg.encode())


def _uint_size(v: int) -> int:
    """Bytes of a non-negative integer in msgpack."""
    return 1 if v < 128 else 2 if v < 256 else 3 if v < 65536 else 5 if v < 1 << 32 else 9
