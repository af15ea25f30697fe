"""The shielded circuit end to end: wallet orders proven by snarkjs, verified by p2pnode.crypto.groth16.

Proofs are made through the Node helper (p2pnode/zk/prover.js) with development keys from
p2pnode.zk.setup (cached under build/zk; the first run makes them, about a minute). Tests that need Node
are skipped, with the command to run, when Node.js or node_modules is missing; the committed vectors in
tests/zk/shielded are checked either way.

"Cannot be proven" means snarkjs refuses to compute a witness: the constraints have no solution, so no
valid proof exists for that statement under these keys.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pnode.crypto import CURVE_ORDER, SpendingKey, groth16
from p2pnode.crypto.groth16 import Proof, VerifyingKey, groth16_batch_verify, groth16_verify, parse_public
from p2pnode.wire.messages import SHIELD, SHIELDED_TRANSFER, UNSHIELD, ShieldedOrder, decode
from p2pnode.zk import notes
from p2pnode.zk.notes import InsufficientNotes, Note, ShieldedKeys
from p2pnode.zk.paths import find_zk_paths
from p2pnode.zk.prover import Prover, ProverError
from p2pnode.zk.setup import ensure_circuit_keys

R = CURVE_ORDER
VECTORS = Path(__file__).resolve().parents[1] / "zk" / "shielded"
CHAIN = bytes(range(32))
HAVE_NODE = shutil.which("node") is not None and (find_zk_paths().node_modules / ".bin" / "snarkjs").exists()
needs_node = pytest.mark.skipif(
    not HAVE_NODE, reason="Node.js or node_modules missing: run `make node_modules/.installed` (npm ci)"
)


# -- committed vectors (no Node needed) -------------------------------------------------------------------
@pytest.mark.parametrize("i", [0, 1])
def test_committed_vectors_verify_and_round_trip_through_bytes(i: int) -> None:
    vk = VerifyingKey.from_json(json.loads((VECTORS / "verification_key.json").read_text()))
    assert vk.n_public == 7
    proof_json = json.loads((VECTORS / f"proof_{i}.json").read_text())
    public = parse_public(json.loads((VECTORS / f"public_{i}.json").read_text()))
    raw = notes.proof_to_bytes(proof_json)
    assert len(raw) == notes.PROOF_LEN
    assert notes.proof_from_bytes(raw) == proof_json
    proof = Proof.from_json(notes.proof_from_bytes(raw))
    assert groth16.proof_from_bytes(raw) == proof  # the node's decoder reads the same layout
    assert groth16.proof_to_bytes(proof_json) == raw
    assert groth16_verify(vk, proof, public)
    for k in range(len(public)):
        tampered = list(public)
        tampered[k] = (tampered[k] + 1) % R
        assert not groth16_verify(vk, proof, tampered)


def test_proof_bytes_layout() -> None:
    raw = b"".join((1000 + i).to_bytes(32, "big") for i in range(8))
    obj = notes.proof_from_bytes(raw)
    assert obj["pi_a"][0] == str(int.from_bytes(raw[0:32], "big"))
    assert obj["pi_b"][0][1] == str(int.from_bytes(raw[96:128], "big"))  # B.x.c1
    assert obj["pi_b"][1][0] == str(int.from_bytes(raw[128:160], "big"))  # B.y.c0
    assert obj["pi_c"][1] == str(int.from_bytes(raw[224:256], "big"))
    assert notes.proof_to_bytes(obj) == raw
    with pytest.raises(ValueError):
        notes.proof_from_bytes(raw[:-1])


# -- with the Node helper -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys_dir() -> Path:
    if not HAVE_NODE:
        pytest.skip("Node.js or node_modules missing: run `make node_modules/.installed` (npm ci)")
    return ensure_circuit_keys()


@pytest.fixture(scope="module")
def vk(keys_dir: Path) -> VerifyingKey:
    return VerifyingKey.from_json(json.loads((keys_dir / "verification_key.json").read_text()))


@pytest.fixture(scope="module")
def prover(keys_dir: Path) -> Iterator[Prover]:
    with Prover.from_dir(keys_dir) as p:
        yield p


def _verify(vk: VerifyingKey, order: ShieldedOrder) -> bool:
    proof = Proof.from_json(notes.proof_from_bytes(order.proof))
    return groth16_verify(vk, proof, notes.public_inputs(order.tx))


@needs_node
def test_poseidon_matches_circomlib(prover: Prover) -> None:
    # circomlibjs test values for Poseidon([1]), Poseidon([1, 2]), Poseidon([1, 2, 3]).
    p1 = 18586133768512220936620570745912940619677854269274689475585506675881198879027
    p2 = 7853200120776062878684798364095072458815029376092732009249414926327459813530
    p3 = 6542985608222806190361240322586112750744169038454362455181422643027100751666
    assert (prover.poseidon(1), prover.poseidon(1, 2), prover.poseidon(1, 2, 3)) == (p1, p2, p3)


@needs_node
def test_keys_are_derived_from_the_spending_key(prover: Prover) -> None:
    sk = SpendingKey.generate().to_bytes()
    a, b = ShieldedKeys.from_spending_key(sk, prover), ShieldedKeys.from_spending_key(sk, prover)
    assert a == b and len(a.address) == notes.ADDRESS_LEN
    assert a.owner_pub == prover.poseidon(a.owner_secret)
    assert notes.parse_address(a.address) == (a.owner_pub, a.memo_public)


@needs_node
def test_shield_pay_unshield(prover: Prover, vk: VerifyingKey) -> None:
    alice, bob = SpendingKey.generate(), SpendingKey.generate()
    ka = ShieldedKeys.from_spending_key(alice.to_bytes(), prover)
    kb = ShieldedKeys.from_spending_key(bob.to_bytes(), prover)

    shield = notes.build_shield(prover, ka, alice, CHAIN, 7, 1000)
    assert decode(shield.encode(), ShieldedOrder) == shield
    tx = shield.tx
    assert (tx.kind, tx.inputs, tx.public_in, tx.public_out, tx.account, tx.seq) == (
        SHIELD, (), 1000, 0, alice.address, 7)
    assert alice.public == shield.account_key
    assert _verify(vk, shield)
    assert notes.scan(prover, kb, notes.tx_outputs(tx)) == []
    (note,) = notes.scan(prover, ka, notes.tx_outputs(tx))
    assert note.value == 1000 and note.commitment_bytes == tx.outputs[0]

    pay = notes.build_transfer(prover, ka, CHAIN, [note], [(kb.address, 300)])
    assert pay.tx.kind == SHIELDED_TRANSFER and pay.tx.inputs == (note.commitment_bytes,)
    assert (pay.tx.public_in, pay.tx.public_out, pay.account_key, pay.account_proof) == (0, 0, b"", b"")
    assert _verify(vk, pay)
    (to_bob,) = notes.scan(prover, kb, notes.tx_outputs(pay.tx))
    (change,) = notes.scan(prover, ka, notes.tx_outputs(pay.tx))
    assert (to_bob.value, change.value) == (300, 700)

    out = notes.build_unshield(prover, kb, CHAIN, [to_bob], bob.address, 300)
    assert out.tx.kind == UNSHIELD and out.tx.outputs == () and out.tx.public_out == 300
    assert out.tx.account == bob.address
    assert _verify(vk, out)

    orders = (shield, pay, out)
    items = [(Proof.from_json(notes.proof_from_bytes(o.proof)), notes.public_inputs(o.tx)) for o in orders]
    assert groth16_batch_verify(vk, items)


@needs_node
def test_two_inputs_two_outputs_and_tampering(prover: Prover, vk: VerifyingKey) -> None:
    alice, bob = SpendingKey.generate(), SpendingKey.generate()
    ka = ShieldedKeys.from_spending_key(alice.to_bytes(), prover)
    kb = ShieldedKeys.from_spending_key(bob.to_bytes(), prover)
    mine = [Note.make(prover, 40, ka.owner_pub), Note.make(prover, 2, ka.owner_pub)]
    order = notes.build_transfer(prover, ka, CHAIN, mine, [(kb.address, 41)])
    assert _verify(vk, order)
    proof = Proof.from_json(notes.proof_from_bytes(order.proof))
    statement = notes.public_inputs(order.tx)
    for k in range(len(statement)):
        tampered = list(statement)
        tampered[k] = (tampered[k] + 1) % R
        assert not groth16_verify(vk, proof, tampered)
    # The proof cannot move to another transaction: any change to the statement changes its binding.
    moved = dataclasses.replace(order.tx, memos=order.tx.memos[::-1])
    assert not groth16_verify(vk, proof, notes.public_inputs(moved))


@needs_node
def test_wallet_refuses_overspend_and_foreign_notes(prover: Prover) -> None:
    alice, bob = SpendingKey.generate(), SpendingKey.generate()
    ka = ShieldedKeys.from_spending_key(alice.to_bytes(), prover)
    kb = ShieldedKeys.from_spending_key(bob.to_bytes(), prover)
    note = Note.make(prover, 10, ka.owner_pub)
    with pytest.raises(InsufficientNotes) as info:
        notes.build_transfer(prover, ka, CHAIN, [note], [(kb.address, 11)])
    assert (info.value.available, info.value.amount) == (10, 11)
    with pytest.raises(InsufficientNotes):
        notes.build_unshield(prover, ka, CHAIN, [note], bob.address, 11)
    with pytest.raises(notes.LocalError):
        notes.build_transfer(prover, kb, CHAIN, [note], [(kb.address, 5)])  # not bob's note
    with pytest.raises(notes.LocalError):
        notes.build_transfer(prover, ka, CHAIN, [note, note], [(kb.address, 5)])
    with pytest.raises(notes.LocalError):  # two payments plus change do not fit in two outputs
        notes.build_transfer(prover, ka, CHAIN, [note], [(kb.address, 3), (kb.address, 3)])


# -- the circuit itself refuses bad witnesses --------------------------------------------------------------
SECRET = 123456789


def _witness(prover: Prover, *, ins: list[tuple[int, int]], outs: list[int], public_in: int = 0,
             public_out: int = 0) -> dict[str, Any]:
    """Circuit inputs spending notes ``(value, blinding)`` owned by SECRET into outputs of ``outs``
    values; every commitment computed honestly, nothing checked (that is the circuit's job)."""
    owner = prover.poseidon(SECRET)

    def pad(xs: list[int]) -> list[int]:
        return xs + [0] * (2 - len(xs))

    in_commit = [prover.poseidon(v % R, owner, b) for v, b in ins]
    out_blind = [1000 + j for j in range(len(outs))]
    out_commit = [prover.poseidon(v % R, owner, b) for v, b in zip(outs, out_blind, strict=True)]
    return {
        "binding": 42,
        "in_commit": pad(in_commit),
        "out_commit": pad(out_commit),
        "public_in": public_in,
        "public_out": public_out,
        "in_value": pad([v % R for v, _ in ins]),
        "in_blinding": pad([b for _, b in ins]),
        "in_owner_secret": pad([SECRET] * len(ins)),
        "in_used": pad([1] * len(ins)),
        "out_value": pad([v % R for v in outs]),
        "out_owner_pub": pad([owner] * len(outs)),
        "out_blinding": pad(out_blind),
        "out_used": pad([1] * len(outs)),
    }


@needs_node
def test_honest_witness_proves(prover: Prover, vk: VerifyingKey) -> None:
    w = _witness(prover, ins=[(10, 1), (5, 2)], outs=[12, 1], public_out=2)
    proof, public = prover.prove(w)
    assert [int(s) for s in public] == [42, *w["in_commit"], *w["out_commit"], 0, 2]
    assert groth16_verify(vk, Proof.from_json(proof), [int(s) for s in public])


@needs_node
@pytest.mark.parametrize(
    "case",
    [
        "overspend",
        "overspend_with_public_out",
        "value_2_64",
        "public_in_2_64",
        "negative_output_wraps_the_field",
        "unused_input_nonzero_commitment",
        "unused_output_nonzero_commitment",
        "unused_input_nonzero_value",
        "same_note_twice",
        "wrong_owner_secret",
        "non_boolean_used_flag",
    ],
)
def test_circuit_cannot_prove(prover: Prover, case: str) -> None:
    if case == "overspend":
        w = _witness(prover, ins=[(10, 1)], outs=[11])
    elif case == "overspend_with_public_out":
        w = _witness(prover, ins=[(10, 1)], outs=[5], public_out=6)
    elif case == "value_2_64":
        w = _witness(prover, ins=[], outs=[2**64], public_in=2**64)
    elif case == "public_in_2_64":
        # A SHIELD of 2^64 + 5 whose note says 2^64 + 5: balances, but neither fits in 64 bits.
        w = _witness(prover, ins=[], outs=[2**64 + 5], public_in=2**64 + 5)
    elif case == "negative_output_wraps_the_field":
        # 10 == (r - 1) + 11 in the field: a "-1" output would mint 1 unit if values were not range-checked.
        w = _witness(prover, ins=[(10, 1)], outs=[-1, 11])
    elif case == "unused_input_nonzero_commitment":
        w = _witness(prover, ins=[(10, 1)], outs=[10])
        w["in_commit"][1] = prover.poseidon(0, prover.poseidon(SECRET), 7)
    elif case == "unused_output_nonzero_commitment":
        w = _witness(prover, ins=[(10, 1)], outs=[10])
        w["out_commit"][1] = prover.poseidon(0, prover.poseidon(SECRET), 7)
    elif case == "unused_input_nonzero_value":
        w = _witness(prover, ins=[(10, 1)], outs=[15])
        w["in_value"][1] = 5
    elif case == "same_note_twice":
        w = _witness(prover, ins=[(10, 1), (10, 1)], outs=[20])
    elif case == "wrong_owner_secret":
        w = _witness(prover, ins=[(10, 1)], outs=[10])
        w["in_owner_secret"][0] = SECRET + 1
    elif case == "non_boolean_used_flag":
        # used = 2 would double an input's weight if flags were not constrained to bits.
        w = _witness(prover, ins=[(10, 1)], outs=[10])
        w["in_used"][0] = 2
    else:  # pragma: no cover
        raise AssertionError(case)
    with pytest.raises(ProverError, match="Assert Failed"):
        prover.prove(w)
