"""Cheap checks on an order before any proof is verified (gossip validation's first steps).

``admit`` is what every node runs on every order it receives (``[REJECT]`` by raising a typed
refusal, ``[IGNORE]`` by returning the reason); ``client_state_checks`` adds what a client that
submits an order should hear at once rather than wait for (an overspend, a spent note).
"""

from __future__ import annotations

from p2pnode.core.ledger import Ledger, SeqTooHigh, UnknownNote
from p2pnode.core.payments import AnyOrder
from p2pnode.core.shielded import ShieldedError, static_checks_shielded
from p2pnode.core.validator import static_checks
from p2pnode.wire.messages import SHIELD, Order


def admit(
    order: AnyOrder,
    chain_id: bytes,
    ledger: Ledger,
    shielded: bool,
    future_seqs: int = 16,
    *,
    check_balance: bool = True,
) -> str | None:
    """Raise a refusal (OrderError, LedgerError, ShieldedError); return a reason to ignore the order
    without penalty (settled already, a seq more than ``future_seqs`` past the account's next, or an
    amount above the sender's whole balance here), or None to go on to the proof.

    The balance check is an ``[IGNORE]``: a credit this node has not applied yet may cover it, and the
    node that took the order from its client (which checked the funds there) pushes it again. A
    client's own submission skips it (``check_balance=False``): ``client_state_checks`` answers it."""
    if isinstance(order, Order):
        t = order.transfer
        static_checks(order, chain_id)
        ledger.check_sender(t)
        window = _seq_window(t.seq, ledger.next_seq(t.sender), future_seqs)
        if window is not None:
            return window
        balance = ledger.accounts[t.sender].balance
        if check_balance and t.amount > balance:
            return f"balance {balance} does not cover the amount {t.amount}"
        return None
    if not shielded:
        raise ShieldedError("shielded payments are not enabled on this chain")
    static_checks_shielded(order, chain_id)
    tx = order.tx
    if tx.kind == SHIELD:
        if tx.account not in ledger.accounts:
            raise ShieldedError(f"unknown account {tx.account.hex()}")
        window = _seq_window(tx.seq, ledger.next_seq(tx.account), future_seqs)
        if window is not None:
            return window
    if any(ledger.notes.get(c) for c in tx.inputs):
        return "input already spent"
    return None


def _seq_window(seq: int, next_seq: int, future_seqs: int) -> str | None:
    if seq < next_seq:
        return "already settled"
    if seq > next_seq + future_seqs:
        return f"seq {seq} is too far ahead: the account's next seq is {next_seq} (window {future_seqs})"
    return None


def client_state_checks(order: AnyOrder, ledger: Ledger) -> None:
    """Raise what a submitting client should hear now: an overspend, a spent or clashing note."""
    if isinstance(order, Order):
        t = order.transfer
        if t.seq == ledger.next_seq(t.sender):
            ledger.check_funds(t)
        return
    try:
        ledger.check_shielded(order.tx)
    except (SeqTooHigh, UnknownNote):
        pass  # its predecessors may still be on their way: accept and hold
