"""Accounts, certificate application and the state root.

Rules:

- An account is (balance: u64, next_seq: u64). Genesis creates the funded ones; a credit creates a
  recipient on first use.
- A certificate for (sender, seq) applies only when ``seq == next_seq(sender)`` and the sender's
  balance covers the amount. Otherwise it is *held* (see :class:`p2pnode.core.node.NodeCore`). Every
  certificate was voted for by at least one honest validator that had applied enough earlier
  certificates to cover it, so holding until those arrive always terminates, and balances never go
  negative (FastPay allows signed balances instead; we keep u64 and wait).
- Debits of one account are ordered by seq and credits commute, so the ledger is a function of the
  set of applied certificates: the state root is identical on every node holding the same set.

State root: a binary Merkle tree over the accounts sorted by address. A leaf is
``hash256(LEAF, address, balance, next_seq)``; an inner node ``hash256(NODE, left, right)``; a lone
last node at a level is carried up unchanged. Updates recompute only the touched paths; a new
account rebuilds the tree.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from p2pnode.crypto import hash256
from p2pnode.errors import P2PNodeError
from p2pnode.wire.messages import SHIELD, UNSHIELD, ShieldedTransfer, Transfer, u64
from p2pnode.wire.types import U64_MAX, Address, Digest

LEAF = b"p2pnode/account/v1"
NODE = b"p2pnode/merkle/v1"
EMPTY_ROOT = hash256(b"p2pnode/empty/v1")
NOTES = b"p2pnode/notes/v1"
STATE = b"p2pnode/state/v1"


class LedgerError(P2PNodeError):
    """A transfer that the ledger cannot take; each subclass carries its facts."""


class UnknownSender(LedgerError):
    def __init__(self, sender: bytes) -> None:
        super().__init__(f"unknown sender {sender.hex()}")
        self.sender = sender


class InsufficientFunds(LedgerError):
    def __init__(self, balance: int, amount: int) -> None:
        super().__init__(f"insufficient funds: balance {balance}, amount {amount}")
        self.balance = balance
        self.amount = amount


class SeqTooLow(LedgerError):
    def __init__(self, seq: int, expected: int) -> None:
        super().__init__(f"seq too low: got {seq}, account is at {expected}")
        self.seq = seq
        self.expected = expected


class SeqTooHigh(LedgerError):
    def __init__(self, seq: int, expected: int) -> None:
        super().__init__(f"seq too high: got {seq}, account is at {expected}")
        self.seq = seq
        self.expected = expected


class UnknownNote(LedgerError):
    """An input note this ledger has not seen created (yet: the certificate is held)."""

    def __init__(self, commitment: bytes) -> None:
        super().__init__(f"unknown note {commitment.hex()[:16]}")
        self.commitment = commitment


class NoteSpent(LedgerError):
    def __init__(self, commitment: bytes) -> None:
        super().__init__(f"note {commitment.hex()[:16]} is already spent")
        self.commitment = commitment


class NoteExists(LedgerError):
    def __init__(self, commitment: bytes) -> None:
        super().__init__(f"output note {commitment.hex()[:16]} already exists")
        self.commitment = commitment


class BalanceOverflow(LedgerError):
    def __init__(self, balance: int, amount: int) -> None:
        super().__init__(f"balance overflow: balance {balance} + amount {amount} exceeds 2^64-1")
        self.balance = balance
        self.amount = amount


@dataclass(slots=True)
class Account:
    balance: int = 0
    next_seq: int = 0


class Ledger:
    """Balances and sequence numbers, with an incrementally maintained state root.

    Invariants: balances stay within u64; ``applied`` maps (sender, seq) to the digest of the one
    certificate applied there; ``apply`` either changes nothing (raising) or applies completely.
    """

    def __init__(self, balances: dict[bytes, int] | None = None) -> None:
        self.accounts: dict[Address, Account] = {}
        self.applied: dict[tuple[Address, int], Digest] = {}
        self.notes: dict[bytes, bool] = {}  # shielded note commitment -> spent
        self._notes_root: bytes | None = None
        self._addrs: list[Address] = []
        self._levels: list[list[bytes]] = []
        self._dirty: set[int] = set()
        self._rebuild = True
        for addr, bal in (balances or {}).items():
            self.accounts[Address(addr)] = Account(balance=bal)
        self._addrs = sorted(self.accounts)

    # -- queries ------------------------------------------------------------------------------------
    def account(self, addr: bytes) -> Account | None:
        return self.accounts.get(Address(addr))

    def next_seq(self, addr: bytes) -> int:
        acct = self.accounts.get(Address(addr))
        return acct.next_seq if acct else 0

    def applied_count(self) -> int:
        return len(self.applied)

    def heads(self) -> list[tuple[bytes, int]]:
        """(address, next_seq) of every account that has sent at least once, sorted."""
        return [(a, self.accounts[a].next_seq) for a in self._addrs if self.accounts[a].next_seq > 0]

    def total_supply(self) -> int:
        return sum(a.balance for a in self.accounts.values())

    # -- checks and application ---------------------------------------------------------------------
    def check_sender(self, t: Transfer) -> None:
        """The sender exists."""
        if t.sender not in self.accounts:
            raise UnknownSender(t.sender)

    def check_seq(self, t: Transfer) -> None:
        """``t.seq`` is the sender's next (too low: settled already; too high: predecessors missing)."""
        acct = self.accounts[t.sender]
        if t.seq < acct.next_seq:
            raise SeqTooLow(t.seq, acct.next_seq)
        if t.seq > acct.next_seq:
            raise SeqTooHigh(t.seq, acct.next_seq)

    def check_funds(self, t: Transfer) -> None:
        """The sender covers the amount and the recipient's balance stays within u64."""
        acct = self.accounts[t.sender]
        if acct.balance < t.amount:
            raise InsufficientFunds(acct.balance, t.amount)
        if t.sender != t.recipient:
            to = self.accounts.get(t.recipient)
            if to is not None and to.balance + t.amount > U64_MAX:
                raise BalanceOverflow(to.balance, t.amount)

    def check(self, t: Transfer) -> None:
        """Raise the ledger error that would stop ``t`` from applying now, or return."""
        self.check_sender(t)
        self.check_seq(t)
        self.check_funds(t)

    def apply(self, t: Transfer, digest: Digest) -> None:
        """Debit sender, credit recipient, advance seq. Raises a LedgerError and changes nothing if
        :meth:`check` fails."""
        self.check(t)
        sender = self.accounts[t.sender]
        sender.balance -= t.amount
        sender.next_seq += 1
        to = self.accounts.get(t.recipient)
        if to is None:
            to = self.accounts[t.recipient] = Account()
            bisect.insort(self._addrs, t.recipient)
            self._rebuild = True
        to.balance += t.amount
        self.applied[(t.sender, t.seq)] = digest
        if not self._rebuild:
            self._dirty.add(bisect.bisect_left(self._addrs, t.sender))
            self._dirty.add(bisect.bisect_left(self._addrs, t.recipient))

    # -- shielded notes -----------------------------------------------------------------------------
    def check_shielded(self, tx: ShieldedTransfer) -> None:
        """State checks of a structurally valid shielded statement; raises the first failure.

        SHIELD debits ``account`` like a transfer of ``public_in`` at ``seq``; inputs must exist and be
        unspent; outputs must be new; UNSHIELD's credit must fit in u64.
        """
        if tx.kind == SHIELD:
            self.check(
                Transfer(
                    chain_id=tx.chain_id,
                    sender=tx.account,
                    recipient=tx.account,
                    amount=tx.public_in,
                    seq=tx.seq,
                )
            )
        for c in tx.inputs:
            spent = self.notes.get(c)
            if spent is None:
                raise UnknownNote(c)
            if spent:
                raise NoteSpent(c)
        for c in tx.outputs:
            if c in self.notes:
                raise NoteExists(c)
        if tx.kind == UNSHIELD:
            to = self.accounts.get(tx.account)
            if to is not None and to.balance + tx.public_out > U64_MAX:
                raise BalanceOverflow(to.balance, tx.public_out)

    def apply_shielded(self, tx: ShieldedTransfer, digest: Digest) -> list[bytes]:
        """Apply (after :meth:`check_shielded`, which it calls): returns the accounts touched."""
        self.check_shielded(tx)
        touched: list[bytes] = []
        if tx.kind == SHIELD:
            acct = self.accounts[tx.account]
            acct.balance -= tx.public_in
            acct.next_seq += 1
            self.applied[(tx.account, tx.seq)] = digest
            touched.append(tx.account)
        if tx.kind == UNSHIELD:
            self._credit(tx.account, tx.public_out)
            touched.append(tx.account)
        for c in tx.inputs:
            self.notes[c] = True
        for c in tx.outputs:
            self.notes[c] = False
        self._notes_root = None
        for a in touched:
            if not self._rebuild:
                self._dirty.add(bisect.bisect_left(self._addrs, Address(a)))
        return touched

    def _credit(self, addr: bytes, amount: int) -> None:
        to = self.accounts.get(Address(addr))
        if to is None:
            to = self.accounts[Address(addr)] = Account()
            bisect.insort(self._addrs, Address(addr))
            self._rebuild = True
        to.balance += amount

    def restore(
        self,
        accounts: dict[bytes, tuple[int, int]],
        applied: dict[tuple[bytes, int], bytes],
        notes: dict[bytes, bool] | None = None,
    ) -> None:
        """Replace the state with persisted accounts, applied (sender, seq) -> digest and notes."""
        self.notes = dict(notes or {})
        self._notes_root = None
        self.accounts = {Address(a): Account(balance=b, next_seq=s) for a, (b, s) in accounts.items()}
        self.applied = {(Address(a), s): Digest(d) for (a, s), d in applied.items()}
        self._addrs = sorted(self.accounts)
        self._rebuild = True

    # -- state root ---------------------------------------------------------------------------------
    def _leaf(self, addr: Address) -> bytes:
        acct = self.accounts[addr]
        return hash256(LEAF, addr, u64(acct.balance), u64(acct.next_seq))

    def root(self) -> bytes:
        """The state root. With shielded notes present it also covers the note set and which notes
        are spent: ``hash256(STATE, accounts root, notes root)``; without, it is the accounts root."""
        accounts = self.accounts_root()
        if not self.notes:
            return accounts
        if self._notes_root is None:
            self._notes_root = hash256(
                NOTES, *(c + (b"\x01" if spent else b"\x00") for c, spent in sorted(self.notes.items()))
            )
        return hash256(STATE, accounts, self._notes_root)

    def accounts_root(self) -> bytes:
        if not self._addrs:
            return EMPTY_ROOT
        if self._rebuild:
            level = [self._leaf(a) for a in self._addrs]
            self._levels = [level]
            while len(level) > 1:
                level = [
                    hash256(NODE, level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                    for i in range(0, len(level), 2)
                ]
                self._levels.append(level)
            self._rebuild = False
            self._dirty.clear()
        elif self._dirty:
            idx = self._dirty
            for i in idx:
                self._levels[0][i] = self._leaf(self._addrs[i])
            for depth in range(1, len(self._levels)):
                below = self._levels[depth - 1]
                here = self._levels[depth]
                idx = {i // 2 for i in idx}
                for i in idx:
                    left = 2 * i
                    here[i] = (
                        hash256(NODE, below[left], below[left + 1]) if left + 1 < len(below) else below[left]
                    )
            self._dirty = set()
        return self._levels[-1][0]
