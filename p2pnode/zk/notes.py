"""Shielded notes on the wallet side: keys, notes, memos, and the orders that move them (DESIGN.md §6).

Protocol (the node's validation follows the same definitions; the functions marked *shared* are the ones
it calls):

* Field elements are BN254 scalars (``r = CURVE_ORDER``), 32 bytes big-endian on the wire.
* Keys come from an account's 32-byte spending key ``sk``:
  ``owner_secret = int(hash256("p2pnode/shielded/owner/v1", sk)) mod r``,
  ``owner_pub = Poseidon(owner_secret)``, memo key ``X25519 private = hash256("p2pnode/shielded/memo/v1",
  sk)``. A shielded address is ``owner_pub (32) || X25519 public (32)``, 64 bytes (128 hex digits).
* A note is ``(value < 2^64, owner_pub, blinding)``; the ledger sees only
  ``commitment = Poseidon(value, owner_pub, blinding)``, and the recipient learns the opening from the
  memo sealed to its X25519 key with the commitment as associated data (:mod:`p2pnode.crypto.memo`).
* A :class:`~p2pnode.wire.messages.ShieldedTransfer` lists only the used input and output commitments
  (0..2 each, never a zero commitment); the circuit's unused slots are 0.
* *shared* :func:`binding`: ``int(hash256("p2pnode/shielded/binding/v1", tx.encode())) mod r``, the
  circuit's first public input; it covers every field of the transaction, memos included.
* *shared* :func:`public_inputs`: ``[binding, in_commit[0..1], out_commit[0..1], public_in,
  public_out]``, the statement a node verifies the proof against.
* *shared* :func:`statement_digest`: ``hash256("p2pnode/shielded/tx/v1", tx.encode())``; a SHIELD order's
  ``account_proof`` is the account key's Schnorr proof over it.
* *shared* :func:`proof_from_bytes` / :func:`proof_to_bytes`: the 256-byte proof encoding
  ``A.x, A.y, B.x.c0, B.x.c1, B.y.c0, B.y.c1, C.x, C.y`` (32 bytes big-endian each, snarkjs's
  ``[c0, c1]`` order for Fp2).

What stays public: which notes a transaction spends (inputs are named by commitment), how many outputs it
makes, and the transparent amount and account of a SHIELD or UNSHIELD. Values and owners of notes are
hidden.

Everything here is pure except the calls to the prover (Poseidon and proving). Randomness (blindings)
comes from :mod:`secrets`. Errors: a wallet request that cannot be met raises
:class:`~p2pnode.errors.LocalError` (:class:`InsufficientNotes` for an overspend); malformed bytes passed
to the shared functions raise ``ValueError``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from p2pnode.crypto import CURVE_ORDER, FIELD_MODULUS, SpendingKey, hash256
from p2pnode.crypto.memo import memo_public_key
from p2pnode.crypto.memo import open_ as memo_open
from p2pnode.crypto.memo import seal as memo_seal
from p2pnode.errors import LocalError
from p2pnode.wire.messages import SHIELD, SHIELDED_TRANSFER, UNSHIELD, ShieldedOrder, ShieldedTransfer
from p2pnode.wire.types import U64_MAX, Address, Amount, ChainId, Seq

__all__ = [
    "ADDRESS_LEN",
    "InsufficientNotes",
    "Note",
    "PROOF_LEN",
    "ShieldedKeys",
    "binding",
    "build_shield",
    "build_transfer",
    "build_unshield",
    "fe_from_bytes",
    "fe_to_bytes",
    "parse_address",
    "proof_from_bytes",
    "proof_to_bytes",
    "public_inputs",
    "scan",
    "statement_digest",
    "tx_outputs",
]

R = CURVE_ORDER
OWNER_DOMAIN = b"p2pnode/shielded/owner/v1"
MEMO_KEY_DOMAIN = b"p2pnode/shielded/memo/v1"
BINDING_DOMAIN = b"p2pnode/shielded/binding/v1"
TX_DOMAIN = b"p2pnode/shielded/tx/v1"
ADDRESS_LEN = 64
PROOF_LEN = 256
N_IN = 2
N_OUT = 2
NOTE_PLAINTEXT_LEN = 8 + 32 + 32
NO_ACCOUNT = Address(bytes(20))


class Hasher(Protocol):
    def poseidon(self, *inputs: int) -> int: ...


class ProverLike(Hasher, Protocol):
    def prove(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]: ...


class InsufficientNotes(LocalError):
    """The notes given do not cover the payment."""

    def __init__(self, available: int, amount: int) -> None:
        super().__init__(f"notes hold {available}, payment needs {amount}")
        self.available = available
        self.amount = amount


# -- field elements and the shared statement --------------------------------------------------------------
def fe_to_bytes(x: int) -> bytes:
    """A field element as 32 bytes big-endian. Raises ``ValueError`` if not in [0, r)."""
    if not 0 <= x < R:
        raise ValueError("not a field element")
    return x.to_bytes(32, "big")


def fe_from_bytes(b: bytes) -> int:
    """32 bytes big-endian as a field element. Raises ``ValueError`` on a bad length or a value >= r."""
    if len(b) != 32:
        raise ValueError("field element must be 32 bytes")
    x = int.from_bytes(b, "big")
    if x >= R:
        raise ValueError("field element not below r")
    return x


def binding(tx: ShieldedTransfer) -> int:
    """The circuit's ``binding`` public input for ``tx`` (shared with the node)."""
    return int.from_bytes(hash256(BINDING_DOMAIN, tx.encode()), "big") % R


def statement_digest(tx: ShieldedTransfer) -> bytes:
    """The 32-byte digest a SHIELD order's account key proves over (shared with the node)."""
    return hash256(TX_DOMAIN, tx.encode())


def public_inputs(tx: ShieldedTransfer) -> list[int]:
    """The Groth16 statement of ``tx``: ``[binding, in0, in1, out0, out1, public_in, public_out]`` with 0
    for unused slots (shared with the node).

    Raises ``ValueError`` if ``tx`` lists more than 2 inputs or outputs, or a commitment that is zero or
    not below r: such a transaction is invalid whatever its proof. (Duplicate inputs cannot be proven;
    duplicate outputs or outputs already in the note set are for the ledger to refuse.)
    """
    if len(tx.inputs) > N_IN or len(tx.outputs) > N_OUT:
        raise ValueError("at most 2 inputs and 2 outputs")
    ins = [fe_from_bytes(c) for c in tx.inputs]
    outs = [fe_from_bytes(c) for c in tx.outputs]
    if 0 in ins or 0 in outs:
        raise ValueError("a listed commitment is zero (zero marks an unused slot)")
    ins += [0] * (N_IN - len(ins))
    outs += [0] * (N_OUT - len(outs))
    return [binding(tx), *ins, *outs, tx.public_in, tx.public_out]


def tx_outputs(tx: ShieldedTransfer) -> list[tuple[bytes, bytes]]:
    """``(commitment, memo)`` pairs of ``tx``, the input :func:`scan` takes."""
    return list(zip(tx.outputs, tx.memos, strict=False))


# -- proof bytes ----------------------------------------------------------------------------------------
def _coord(v: Any) -> bytes:
    x = int(v)
    if not 0 <= x < FIELD_MODULUS:
        raise ValueError("proof coordinate not below p")
    return x.to_bytes(32, "big")


def proof_to_bytes(proof: dict[str, Any]) -> bytes:
    """snarkjs's ``proof.json`` (decoded) as 256 bytes: A.x, A.y, B.x.c0, B.x.c1, B.y.c0, B.y.c1, C.x, C.y.

    Raises ``ValueError`` if a point is not affine (z == 1) or a coordinate is out of range.
    """
    try:
        a, b, c = proof["pi_a"], proof["pi_b"], proof["pi_c"]
        if int(a[2]) != 1 or int(c[2]) != 1 or (int(b[2][0]), int(b[2][1])) != (1, 0):
            raise ValueError("proof points must be affine")
        parts = [a[0], a[1], b[0][0], b[0][1], b[1][0], b[1][1], c[0], c[1]]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError("not a snarkjs Groth16 proof") from exc
    return b"".join(_coord(v) for v in parts)


def proof_from_bytes(data: bytes) -> dict[str, Any]:
    """The inverse of :func:`proof_to_bytes`, in snarkjs's JSON shape for
    :meth:`p2pnode.crypto.groth16.Proof.from_json` (which checks ranges, curves and subgroups).

    Raises ``ValueError`` if ``data`` is not 256 bytes.
    """
    if len(data) != PROOF_LEN:
        raise ValueError(f"proof must be {PROOF_LEN} bytes")
    v = [str(int.from_bytes(data[i : i + 32], "big")) for i in range(0, PROOF_LEN, 32)]
    return {
        "pi_a": [v[0], v[1], "1"],
        "pi_b": [[v[2], v[3]], [v[4], v[5]], ["1", "0"]],
        "pi_c": [v[6], v[7], "1"],
        "protocol": "groth16",
        "curve": "bn128",
    }


# -- keys and notes -------------------------------------------------------------------------------------
def parse_address(address: bytes) -> tuple[int, bytes]:
    """``(owner_pub, memo X25519 public key)`` of a 64-byte shielded address; ``ValueError`` if malformed."""
    if len(address) != ADDRESS_LEN:
        raise ValueError(f"shielded address must be {ADDRESS_LEN} bytes ({2 * ADDRESS_LEN} hex digits)")
    return fe_from_bytes(address[:32]), address[32:]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShieldedKeys:
    """A wallet's shielded keys, derived from its account's spending key."""

    owner_secret: int
    owner_pub: int
    memo_private: bytes
    memo_public: bytes

    @classmethod
    def from_spending_key(cls, sk: bytes, hasher: Hasher) -> ShieldedKeys:
        """Derive from ``SpendingKey.to_bytes()`` (32 bytes); ``hasher`` computes Poseidon."""
        if len(sk) != 32:
            raise ValueError("spending key must be 32 bytes")
        owner_secret = int.from_bytes(hash256(OWNER_DOMAIN, sk), "big") % R
        memo_private = hash256(MEMO_KEY_DOMAIN, sk)
        return cls(
            owner_secret=owner_secret,
            owner_pub=hasher.poseidon(owner_secret),
            memo_private=memo_private,
            memo_public=memo_public_key(memo_private),
        )

    @property
    def address(self) -> bytes:
        """The 64-byte shielded address (``.hex()`` for display)."""
        return fe_to_bytes(self.owner_pub) + self.memo_public

    def __repr__(self) -> str:
        return f"ShieldedKeys(address={self.address.hex()[:16]}...)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """An opened note. ``commitment`` is what the ledger stores."""

    value: int
    owner_pub: int
    blinding: int
    commitment: int

    @property
    def commitment_bytes(self) -> bytes:
        return fe_to_bytes(self.commitment)

    @classmethod
    def make(cls, hasher: Hasher, value: int, owner_pub: int) -> Note:
        """A new note with a fresh random blinding."""
        if not 0 <= value <= U64_MAX:
            raise LocalError(f"note value {value} outside [0, 2^64)")
        blinding = secrets.randbelow(R)
        return cls(
            value=value,
            owner_pub=owner_pub,
            blinding=blinding,
            commitment=hasher.poseidon(value, owner_pub, blinding),
        )


def _memo(note: Note, memo_pub: bytes) -> bytes:
    plaintext = note.value.to_bytes(8, "big") + fe_to_bytes(note.blinding) + fe_to_bytes(note.owner_pub)
    return memo_seal(memo_pub, plaintext, note.commitment_bytes)


def scan(hasher: Hasher, keys: ShieldedKeys, outputs: Iterable[tuple[bytes, bytes]]) -> list[Note]:
    """The notes among ``outputs`` (``(commitment, memo)`` pairs, see :func:`tx_outputs`) that ``keys``
    can open and spend. A memo that does not open, names another owner, or does not reproduce its
    commitment is skipped. Whether a note is still unspent is the ledger's to say.
    """
    found: list[Note] = []
    for commitment, memo in outputs:
        plaintext = memo_open(keys.memo_private, memo, commitment)
        if plaintext is None or len(plaintext) != NOTE_PLAINTEXT_LEN or len(commitment) != 32:
            continue
        value = int.from_bytes(plaintext[:8], "big")
        blinding = int.from_bytes(plaintext[8:40], "big")
        owner_pub = int.from_bytes(plaintext[40:72], "big")
        c = int.from_bytes(commitment, "big")
        if owner_pub != keys.owner_pub or blinding >= R or c >= R:
            continue
        if hasher.poseidon(value, owner_pub, blinding) != c:
            continue
        found.append(Note(value=value, owner_pub=owner_pub, blinding=blinding, commitment=c))
    return found


# -- orders ---------------------------------------------------------------------------------------------
def _amount(amount: int, what: str) -> int:
    if not 0 < amount <= U64_MAX:
        raise LocalError(f"{what} {amount} outside [1, 2^64)")
    return amount


def _spendable(keys: ShieldedKeys, inputs: Sequence[Note]) -> int:
    if not 1 <= len(inputs) <= N_IN:
        raise LocalError(f"a shielded transaction spends 1 or 2 notes, got {len(inputs)}")
    if len({n.commitment for n in inputs}) != len(inputs):
        raise LocalError("the same note is listed twice")
    for n in inputs:
        if n.owner_pub != keys.owner_pub:
            raise LocalError(f"note {n.commitment_bytes.hex()[:16]} is not owned by this key")
    return sum(n.value for n in inputs)


def _outputs(
    hasher: Hasher, keys: ShieldedKeys, pay: Sequence[tuple[bytes, int]], change: int
) -> list[tuple[Note, bytes]]:
    wanted = [(parse_address(addr), value) for addr, value in pay]
    if change:
        wanted.append(((keys.owner_pub, keys.memo_public), change))
    if len(wanted) > N_OUT:
        raise LocalError(f"at most {N_OUT} outputs including change, got {len(wanted)}")
    return [(Note.make(hasher, value, owner_pub), memo_pub) for (owner_pub, memo_pub), value in wanted]


def _order(
    prover: ProverLike,
    keys: ShieldedKeys,
    *,
    chain_id: bytes,
    kind: int,
    ins: Sequence[Note],
    outs: Sequence[tuple[Note, bytes]],
    public_in: int,
    public_out: int,
    account: bytes,
    seq: int,
    account_key: SpendingKey | None = None,
) -> ShieldedOrder:
    tx = ShieldedTransfer(
        chain_id=ChainId(chain_id),
        kind=kind,
        inputs=tuple(n.commitment_bytes for n in ins),
        outputs=tuple(n.commitment_bytes for n, _ in outs),
        public_in=Amount(public_in),
        public_out=Amount(public_out),
        account=Address(account),
        seq=Seq(seq),
        memos=tuple(_memo(n, memo_pub) for n, memo_pub in outs),
    )
    statement = public_inputs(tx)

    def pad(values: list[int]) -> list[int]:
        return values + [0] * (2 - len(values))

    out_notes = [n for n, _ in outs]
    circuit_inputs: dict[str, Any] = {
        "binding": statement[0],
        "in_commit": statement[1:3],
        "out_commit": statement[3:5],
        "public_in": public_in,
        "public_out": public_out,
        "in_value": pad([n.value for n in ins]),
        "in_blinding": pad([n.blinding for n in ins]),
        "in_owner_secret": pad([keys.owner_secret for _ in ins]),
        "in_used": pad([1 for _ in ins]),
        "out_value": pad([n.value for n in out_notes]),
        "out_owner_pub": pad([n.owner_pub for n in out_notes]),
        "out_blinding": pad([n.blinding for n in out_notes]),
        "out_used": pad([1 for _ in out_notes]),
    }
    proof, public = prover.prove(circuit_inputs)
    if [int(s) for s in public] != statement:
        raise LocalError("prover returned public signals that differ from the transaction's statement")
    if account_key is None:
        key_bytes, key_proof = b"", b""
    else:
        key_bytes, key_proof = account_key.public, account_key.prove(statement_digest(tx))
    return ShieldedOrder(tx=tx, proof=proof_to_bytes(proof), account_key=key_bytes, account_proof=key_proof)


def build_shield(
    prover: ProverLike,
    keys: ShieldedKeys,
    account_key: SpendingKey,
    chain_id: bytes,
    seq: int,
    amount: int,
    recipient: bytes | None = None,
) -> ShieldedOrder:
    """SHIELD ``amount`` from ``account_key``'s transparent account (consuming its ``seq``) into one note
    for ``recipient`` (a 64-byte shielded address; default: ``keys``' own)."""
    _amount(amount, "amount")
    owner_pub, memo_pub = parse_address(recipient if recipient is not None else keys.address)
    note = Note.make(prover, amount, owner_pub)
    return _order(
        prover,
        keys,
        chain_id=chain_id,
        kind=SHIELD,
        ins=(),
        outs=[(note, memo_pub)],
        public_in=amount,
        public_out=0,
        account=account_key.address,
        seq=seq,
        account_key=account_key,
    )


def build_transfer(
    prover: ProverLike,
    keys: ShieldedKeys,
    chain_id: bytes,
    inputs: Sequence[Note],
    outputs: Sequence[tuple[bytes, int]],
) -> ShieldedOrder:
    """Spend 1-2 of our ``inputs`` into ``outputs`` (``(64-byte address, value)``, 1-2 of them), with the
    remainder as a change note to ourselves (which must fit in the 2 output slots).

    Raises :class:`InsufficientNotes` if the outputs exceed the inputs, ``LocalError`` for other
    impossible requests.
    """
    available = _spendable(keys, inputs)
    if not outputs:
        raise LocalError("a shielded transfer needs at least one output")
    total = sum(_amount(value, "output value") for _, value in outputs)
    if total > available:
        raise InsufficientNotes(available, total)
    outs = _outputs(prover, keys, outputs, available - total)
    return _order(
        prover,
        keys,
        chain_id=chain_id,
        kind=SHIELDED_TRANSFER,
        ins=inputs,
        outs=outs,
        public_in=0,
        public_out=0,
        account=NO_ACCOUNT,
        seq=0,
    )


def build_unshield(
    prover: ProverLike,
    keys: ShieldedKeys,
    chain_id: bytes,
    inputs: Sequence[Note],
    to_address: bytes,
    amount: int,
) -> ShieldedOrder:
    """Spend 1-2 of our ``inputs``, paying ``amount`` to the transparent account ``to_address`` (20
    bytes) and any remainder as a change note to ourselves.

    Raises :class:`InsufficientNotes` if ``amount`` exceeds the inputs.
    """
    if len(to_address) != 20:
        raise LocalError("an unshield pays a 20-byte transparent address")
    available = _spendable(keys, inputs)
    _amount(amount, "amount")
    if amount > available:
        raise InsufficientNotes(available, amount)
    outs = _outputs(prover, keys, (), available - amount)
    return _order(
        prover,
        keys,
        chain_id=chain_id,
        kind=UNSHIELD,
        ins=inputs,
        outs=outs,
        public_in=0,
        public_out=amount,
        account=to_address,
        seq=0,
    )
