"""Shielded payments: the statement's rules, independent of who checks them.

A shielded statement (:class:`ShieldedTransfer`) spends up to two notes, named by their commitments,
and creates up to two. Which notes are spent is public; their values and owners are not. The Groth16
proof (circuit ``circuits/shielded.circom``) shows that the prover can open every input commitment
and owns it, that every output commitment is well formed, that all values fit in 64 bits, and that
``sum(inputs) + public_in == sum(outputs) + public_out``. Its public signals are, in this order::

    binding, in_commit[0], in_commit[1], out_commit[0], out_commit[1], public_in, public_out

with missing slots as 0 and ``binding`` a hash of the whole statement, so a proof cannot be lifted
into another transaction.

Structural checks (``[REJECT]``, cheap, no state), in order:

1. right chain, a known kind;
2. SHIELD: no inputs, public_in > 0, public_out == 0, an account key whose address is ``account``;
   SHIELDED_TRANSFER: inputs, public_in == public_out == 0, account and seq zero;
   UNSHIELD: inputs, public_out > 0, public_in == 0, seq zero;
3. at least one output unless UNSHIELD; one memo per output; commitments distinct, nonzero, < r.

State checks are the ledger's (:meth:`p2pnode.core.ledger.Ledger.check_shielded`); locks are the
validator's: every input commitment, and for SHIELD the account's (sender, seq), lock to one statement.
"""

from __future__ import annotations

from p2pnode.crypto import CURVE_ORDER, address_of, hash256
from p2pnode.errors import P2PNodeError
from p2pnode.wire.messages import SHIELD, SHIELDED_TRANSFER, UNSHIELD, ShieldedOrder, ShieldedTransfer
from p2pnode.wire.types import Digest

STATEMENT_TAG = b"p2pnode/shielded/tx/v1"
BINDING_TAG = b"p2pnode/shielded/binding/v1"
NOTE_LOCK_SEQ = -1  # lock-table seq for a note lock: (commitment, -1) never clashes with (address, seq)


class ShieldedError(P2PNodeError):
    """A structurally invalid shielded statement."""


def shielded_digest(tx: ShieldedTransfer) -> Digest:
    """The payment's name (logs, locks, votes): hash of the statement, never of the proof."""
    return Digest(hash256(STATEMENT_TAG, tx.encode()))


def binding(tx: ShieldedTransfer) -> int:
    """The statement as one field element: the proof's first public signal."""
    return int.from_bytes(hash256(BINDING_TAG, tx.encode()), "big") % CURVE_ORDER


def public_signals(tx: ShieldedTransfer) -> tuple[int, ...]:
    ins = [int.from_bytes(c, "big") for c in tx.inputs] + [0] * (2 - len(tx.inputs))
    outs = [int.from_bytes(c, "big") for c in tx.outputs] + [0] * (2 - len(tx.outputs))
    return (binding(tx), *ins, *outs, tx.public_in, tx.public_out)


def lock_keys(tx: ShieldedTransfer) -> tuple[tuple[bytes, int], ...]:
    keys = [(c, NOTE_LOCK_SEQ) for c in tx.inputs]
    if tx.kind == SHIELD:
        keys.append((tx.account, tx.seq))
    return tuple(keys)


def store_key(tx: ShieldedTransfer) -> tuple[bytes, int]:
    """Where the applied certificate is filed: unique, because an input or (account, seq) is spent once."""
    return (tx.account, tx.seq) if tx.kind == SHIELD else (tx.inputs[0], NOTE_LOCK_SEQ)


def static_checks_shielded(order: ShieldedOrder, chain_id: bytes) -> None:
    tx = order.tx
    if tx.chain_id != chain_id:
        raise ShieldedError(f"wrong chain: {tx.chain_id.hex()[:16]}")
    zero = bytes(20)
    if tx.kind == SHIELD:
        if tx.inputs or tx.public_in == 0 or tx.public_out:
            raise ShieldedError("shield: needs no inputs, public_in > 0 and public_out = 0")
        if len(order.account_key) != 64 or address_of(order.account_key) != tx.account:
            raise ShieldedError("shield: account key does not belong to the account")
        if len(order.account_proof) != 96:
            raise ShieldedError("shield: missing the account's proof")
    elif tx.kind == SHIELDED_TRANSFER:
        if not tx.inputs or tx.public_in or tx.public_out or tx.account != zero or tx.seq:
            raise ShieldedError("transfer: needs inputs, no public amounts, no account")
    elif tx.kind == UNSHIELD:
        if not tx.inputs or tx.public_in or tx.public_out == 0 or tx.seq or tx.account == zero:
            raise ShieldedError("unshield: needs inputs, public_out > 0 and a recipient account")
    else:
        raise ShieldedError(f"unknown shielded kind {tx.kind}")
    if tx.kind != SHIELD and (order.account_key or order.account_proof):
        raise ShieldedError("only a shield carries an account key and proof")
    if not tx.outputs and tx.kind != UNSHIELD:
        raise ShieldedError("no outputs")
    if len(tx.memos) != len(tx.outputs):
        raise ShieldedError("one memo per output")
    commitments = list(tx.inputs) + list(tx.outputs)
    if len(set(commitments)) != len(commitments):
        raise ShieldedError("repeated commitment")
    for c in commitments:
        value = int.from_bytes(c, "big")
        if value == 0 or value >= CURVE_ORDER:
            raise ShieldedError("commitment out of range")
