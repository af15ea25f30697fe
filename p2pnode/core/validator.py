"""The validator role: check an order, lock (sender, seq) to it, vote.

Checks, in order (cheap first, the proof last), each failure a typed error with its facts:

1. ``[REJECT]`` chain id is ours                                   — :class:`WrongChain`
2. ``[REJECT]`` amount > 0                                          — :class:`ZeroAmount`
3. ``[REJECT]`` the sender address is the hash of the proving key   — :class:`KeyMismatch`
4. ``[REJECT]`` the sender exists                                   — ``UnknownSender``
5. ``[IGNORE]`` seq is the account's next (too low: already settled; too high: held until the
   predecessors apply)                                              — ``SeqTooLow`` / ``SeqTooHigh``
6. ``[REJECT]`` no lock on (sender, seq) for a different order      — :class:`ConflictingLock`
7. ``[IGNORE]`` the balance covers the amount                       — ``InsufficientFunds``
8. ``[REJECT]`` the proof verifies                                  — :class:`BadProof`

Then the lock is persisted *before* the vote is signed (the driver reports durability back); the
locks made durable by one commit are signed together, one signature over the Merkle root of their
digests (:mod:`p2pnode.core.batches`). An order that is already locked here gets the same vote
again: handling is idempotent.

The places where a faulty validator would differ are small methods (``_conflicting_lock``,
``_sign``, ``votes_enabled``, ``restore_lock``), so that fault scenarios can subclass this class
(``p2pnode.testing.faults.validators``) while the honest rule here reads without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from p2pnode.core.batches import MAX_BATCH, batch_digest, root
from p2pnode.core.ledger import Ledger, LedgerError
from p2pnode.core.payments import transfer_digest
from p2pnode.core.shielded import lock_keys as shielded_lock_keys
from p2pnode.core.shielded import static_checks_shielded
from p2pnode.crypto import NodeKey, address_of, schnorr_verify
from p2pnode.errors import P2PNodeError
from p2pnode.wire.messages import SHIELD, Order, ShieldedOrder, Transfer, Vote
from p2pnode.wire.types import Address, ChainId, Digest, NodeId


class OrderError(P2PNodeError):
    """An order that a validator refuses to vote for."""


class WrongChain(OrderError):
    def __init__(self, got: bytes, want: bytes) -> None:
        super().__init__(f"wrong chain: order for {got.hex()[:16]}, this chain is {want.hex()[:16]}")


class ZeroAmount(OrderError):
    def __init__(self) -> None:
        super().__init__("amount must be positive")


class KeyMismatch(OrderError):
    def __init__(self, sender: bytes) -> None:
        super().__init__(f"proving key does not belong to sender {sender.hex()}")


class ConflictingLock(OrderError):
    def __init__(self, sender: bytes, seq: int, locked: bytes) -> None:
        super().__init__(
            f"(sender {sender.hex()[:16]}, seq {seq}) is locked to another order {locked.hex()[:16]}"
        )
        self.locked = locked


class BadProof(OrderError):
    def __init__(self) -> None:
        super().__init__("proof does not verify")


def static_checks(order: Order, chain_id: bytes) -> None:
    """Checks 1–3: need no state."""
    t = order.transfer
    if t.chain_id != chain_id:
        raise WrongChain(t.chain_id, chain_id)
    if t.amount == 0:
        raise ZeroAmount()
    if address_of(order.sender_key) != t.sender:
        raise KeyMismatch(t.sender)


def proof_ok(order: Order, digest: bytes) -> bool:
    return schnorr_verify(order.sender_key, digest, order.proof)


class Validator:
    """Lock table and vote signing of one validator.

    Invariant: ``locks[(sender, seq)]`` holds at most one digest, and it is durable before any batch
    holding that digest is signed (``vote_batch`` signs only digests in ``durable``). A lock leaves the
    table only when its certificate applies (seq then < next_seq).
    """

    votes_enabled = True  # whether ``vote`` ever returns a vote

    def __init__(self, key: NodeKey, chain_id: ChainId, ledger: Ledger) -> None:
        self.key = key
        self.node_id = NodeId(key.public)
        self.chain_id = chain_id
        self.ledger = ledger
        self.locks: dict[tuple[Address, int], Digest] = {}
        self.durable: set[Digest] = set()
        self._votes: dict[Digest, Vote] = {}
        self._unsigned: dict[Digest, None] = {}  # durable, not signed yet: the next batch

    def check(self, order: Order, digest: Digest) -> None:
        """Checks 1–7 (all but the proof). Raises the first failure."""
        static_checks(order, self.chain_id)
        t = order.transfer
        self.ledger.check_sender(t)
        self.ledger.check_seq(t)
        locked = self._conflicting_lock((t.sender, t.seq), digest)
        if locked is not None:
            raise ConflictingLock(t.sender, t.seq, locked)
        self.ledger.check_funds(t)

    def check_shielded(self, order: ShieldedOrder, digest: Digest) -> None:
        """The same checks for a shielded order: structure, the shield's account seq, input locks,
        then the ledger (inputs exist and are unspent, outputs new, the shield's funds)."""
        static_checks_shielded(order, self.chain_id)
        tx = order.tx
        if tx.kind == SHIELD:
            probe = Transfer(
                chain_id=tx.chain_id, sender=tx.account, recipient=tx.account, amount=tx.public_in, seq=tx.seq
            )
            self.ledger.check_sender(probe)
            self.ledger.check_seq(probe)
        for key in shielded_lock_keys(tx):
            locked = self._conflicting_lock((Address(key[0]), key[1]), digest)
            if locked is not None:
                raise ConflictingLock(key[0], key[1], locked)
        self.ledger.check_shielded(tx)

    def _conflicting_lock(self, key: tuple[Address, int], digest: Digest) -> Digest | None:
        """The digest ``key`` is locked to, if that is another order than ``digest``."""
        locked = self.locks.get(key)
        return locked if locked is not None and locked != digest else None

    def lock(self, order: Order, digest: Digest) -> bool:
        """Record the lock in memory; True if the caller must persist it (it is new)."""
        return self.lock_keys(((order.transfer.sender, order.transfer.seq),), digest)

    def lock_keys(self, keys: tuple[tuple[bytes, int], ...], digest: Digest) -> bool:
        new = False
        for sender, seq in keys:
            key = (Address(sender), seq)
            if self.locks.get(key) != digest:
                self.locks[key] = digest
                new = True
        return new

    def vote(self, digest: Digest) -> Vote | None:
        """The vote covering a durably locked digest: the batch it was signed in (the same vote every
        time), or a batch of one signed now; None if it is not votable."""
        if not self.votes_enabled:
            return None
        cached = self._votes.get(digest)
        if cached is not None or digest not in self.durable:
            return cached
        return self.vote_batch((digest,))[0]

    def mark_durable(self, digests: Iterable[Digest]) -> None:
        """These locks were committed: they may be signed, in the next :meth:`vote_batch`."""
        for d in digests:
            self.durable.add(d)
            if d not in self._votes:
                self._unsigned[d] = None

    def signed(self, digest: Digest) -> bool:
        return digest in self._votes

    def vote_batch(self, digests: Iterable[Digest] | None = None) -> list[Vote]:
        """Sign, in as few signatures as the batch limit allows, every digest of ``digests`` (default:
        every lock made durable and not signed yet) that is durably locked and not signed yet. Each
        signature is released only over durable locks."""
        if not self.votes_enabled:
            return []
        if digests is None:
            digests, self._unsigned = list(self._unsigned), {}
        todo = list(dict.fromkeys(d for d in digests if d in self.durable and d not in self._votes))
        out = []
        for i in range(0, len(todo), MAX_BATCH):
            chunk = tuple(todo[i : i + MAX_BATCH])
            vote = Vote(validator=self.node_id, digests=chunk, signature=self._sign(root(chunk)))
            for d in chunk:
                self._votes[d] = vote
                self._unsigned.pop(d, None)
            out.append(vote)
        return out

    def _sign(self, batch_root: bytes) -> bytes:
        return self.key.sign(batch_digest(self.chain_id, batch_root))

    def restore_lock(self, sender: Address, seq: int, digest: Digest) -> bool:
        """A durable lock read back at startup; True if it is kept (it then counts as durable)."""
        self.locks[(sender, seq)] = digest
        self.durable.add(digest)
        return True

    def release(self, sender: bytes, seq: int) -> None:
        """The certificate for (sender, seq) applied: its lock and vote are no longer needed."""
        digest = self.locks.pop((Address(sender), seq), None)
        if digest is not None:
            self.durable.discard(digest)
            self._votes.pop(digest, None)
            self._unsigned.pop(digest, None)

    def release_keys(self, keys: tuple[tuple[bytes, int], ...]) -> None:
        for sender, seq in keys:
            self.release(sender, seq)

    def handle_order(self, order: Order) -> Vote:
        """Synchronous path for tests and tools: all checks, proof included, lock treated as durable.

        Error handling: raises the typed error of the first failed check; changes nothing then.
        """
        digest = transfer_digest(order.transfer)
        self.check(order, digest)
        if not proof_ok(order, digest):
            raise BadProof()
        self.lock(order, digest)
        self.durable.add(digest)
        vote = self.vote(digest)
        if vote is None:
            raise OrderError("this validator does not vote")
        return vote


# How a node makes its validator (the class itself, or a subclass for fault scenarios).
ValidatorFactory = Callable[[NodeKey, ChainId, Ledger], "Validator"]

__all__ = ["Validator", "ValidatorFactory", "OrderError", "LedgerError", "static_checks", "proof_ok"]
