"""Groth16 verification (p2pnode.crypto.groth16) on proofs made by snarkjs, with py_ecc as the oracle.

The vectors under tests/zk/ come from scripts/make_zk_vectors.sh (a development ceremony, not for
production). Every case is decided by both the fast verifier and `groth16_verify_reference`, a slow,
independent verifier written directly on py_ecc.
"""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from py_ecc import optimized_bn128 as oracle

from p2pnode.crypto import bn254, groth16
from p2pnode.crypto.bn254 import CURVE_ORDER as R
from p2pnode.crypto.bn254 import FIELD_MODULUS as P
from p2pnode.crypto.groth16 import InvalidElementError, MalformedError, Proof, VerifyingKey
from tests.unit.test_pairing import random_twist_point, rng

VECTORS = Path(__file__).resolve().parent.parent / "zk"
CIRCUITS = ("multiplier", "preimage64")
N_PROOFS = 3


def load(circuit: str, name: str) -> Any:
    return json.loads((VECTORS / circuit / name).read_text())


def vector(circuit: str, i: int = 0) -> tuple[Any, Any, Any]:
    return (
        load(circuit, "verification_key.json"),
        load(circuit, f"proof_{i}.json"),
        load(circuit, f"public_{i}.json"),
    )


# --------------------------------------------------------------------------------------------------------
# The slow oracle


def groth16_verify_reference(vk: Any, proof: Any, public: Any) -> bool:
    """Reference verifier on py_ecc (about 0.6 s): the slow oracle the fast path is checked against.

    Parses snarkjs JSON on its own, rejects any coordinate >= p, public input >= r, wrong count, point off
    its curve or outside the order-r subgroup, then checks
    e(-A, B) * e(alpha, beta) * e(vk_x, gamma) * e(C, delta) == 1 with one final exponentiation.
    """
    try:

        def fq(s: str) -> int:
            v = int(s)
            if not 0 <= v < P:
                raise ValueError("coordinate out of range")
            return v

        def g1(pt: list[str]) -> Any:
            x, y, z = (fq(c) for c in pt)
            if z == 0:
                return None
            if z != 1:
                raise ValueError("not affine")
            out = (oracle.FQ(x), oracle.FQ(y), oracle.FQ(1))
            if not oracle.is_on_curve(out, oracle.b):
                raise ValueError("G1 point off the curve")
            return out

        def g2(pt: list[list[str]]) -> Any:
            (x0, x1), (y0, y1), (z0, z1) = ((fq(a), fq(b)) for a, b in pt)
            if (z0, z1) == (0, 0):
                return None
            if (z0, z1) != (1, 0):
                raise ValueError("not affine")
            out = (oracle.FQ2([x0, x1]), oracle.FQ2([y0, y1]), oracle.FQ2.one())
            if not oracle.is_on_curve(out, oracle.b2):
                raise ValueError("G2 point off the twist")
            if not oracle.is_inf(oracle.multiply(out, oracle.curve_order)):
                raise ValueError("G2 point outside the subgroup")
            return out

        inputs = [int(s) for s in public]
        if (
            any(not 0 <= s < R for s in inputs)
            or len(inputs) != vk["nPublic"]
            or len(vk["IC"]) != len(inputs) + 1
        ):
            return False
        a, b, c = g1(proof["pi_a"]), g2(proof["pi_b"]), g1(proof["pi_c"])
        alpha, beta = g1(vk["vk_alpha_1"]), g2(vk["vk_beta_2"])
        gamma, delta = g2(vk["vk_gamma_2"]), g2(vk["vk_delta_2"])
        ic = [g1(pt) for pt in vk["IC"]]
    except (ValueError, KeyError, TypeError):
        return False
    vk_x = ic[0]
    for s, pt in zip(inputs, ic[1:], strict=True):
        vk_x = oracle.add(vk_x, oracle.multiply(pt, s))
    f = oracle.FQ12.one()
    for g1_pt, g2_pt in ((oracle.neg(a), b), (alpha, beta), (vk_x, gamma), (c, delta)):
        if g1_pt is None or g2_pt is None or oracle.is_inf(g1_pt):
            continue
        f = f * oracle.pairing(g2_pt, g1_pt, final_exponentiate=False)
    return oracle.final_exponentiate(f) == oracle.FQ12.one()


def verify_fast(vk: Any, proof: Any, public: Any) -> bool:
    """The fast path as a node uses it: parse (which may reject), then verify."""
    try:
        key = VerifyingKey.from_json(vk)
        pr = Proof.from_json(proof)
        inputs = groth16.parse_public(public)
    except ValueError:
        return False
    return groth16.groth16_verify(key, pr, inputs)


def both(vk: Any, proof: Any, public: Any) -> tuple[bool, bool]:
    return verify_fast(vk, proof, public), groth16_verify_reference(vk, proof, public)


def g1_json(pt: tuple[int, int]) -> list[str]:
    return [str(pt[0]), str(pt[1]), "1"]


def g2_json(q: tuple[tuple[int, int], tuple[int, int]]) -> list[list[str]]:
    return [[str(q[0][0]), str(q[0][1])], [str(q[1][0]), str(q[1][1])], ["1", "0"]]


# --------------------------------------------------------------------------------------------------------
# Valid proofs


@pytest.mark.parametrize("circuit", CIRCUITS)
def test_snarkjs_proofs_accepted_by_both(circuit: str) -> None:
    for i in range(N_PROOFS):
        assert verify_fast(*vector(circuit, i))
    assert groth16_verify_reference(*vector(circuit, 0))


def test_vectors_have_the_expected_shape() -> None:
    assert VerifyingKey.from_json(load("multiplier", "verification_key.json")).n_public == 1
    assert VerifyingKey.from_json(load("preimage64", "verification_key.json")).n_public == 3


@pytest.mark.parametrize("circuit", CIRCUITS)
def test_batch_verification(circuit: str) -> None:
    vk = VerifyingKey.from_json(load(circuit, "verification_key.json"))
    items = [
        (
            Proof.from_json(load(circuit, f"proof_{i}.json")),
            groth16.parse_public(load(circuit, f"public_{i}.json")),
        )
        for i in range(N_PROOFS)
    ]
    assert groth16.groth16_batch_verify(vk, items)
    assert groth16.groth16_batch_verify(vk, items * 3)
    assert groth16.groth16_batch_verify(vk, [])
    # One proof paired with another statement spoils the batch.
    swapped = [*items[:-1], (items[-1][0], items[0][1])]
    assert not groth16.groth16_batch_verify(vk, swapped)
    # Two wrong proofs whose errors might cancel without random weights: (A, B) and (A', B') exchanged B.
    (p0, s0), (p1, s1) = items[0], items[1]
    crossed = [(Proof(a=p0.a, b=p1.b, c=p0.c), s0), (Proof(a=p1.a, b=p0.b, c=p1.c), s1)]
    assert not groth16.groth16_batch_verify(vk, crossed)
    # A wrong count of public inputs is refused before any pairing.
    assert not groth16.groth16_batch_verify(vk, [(items[0][0], (*items[0][1], 1))])


# --------------------------------------------------------------------------------------------------------
# Rejections, decided by both verifiers


@pytest.mark.parametrize("circuit", CIRCUITS)
def test_tampered_public_input_rejected_by_both(circuit: str) -> None:
    vk, proof, public = vector(circuit)
    public = [str(int(public[0]) + 1), *public[1:]]
    assert both(vk, proof, public) == (False, False)


def test_proof_for_another_statement_rejected_by_both() -> None:
    vk, proof, _ = vector("multiplier", 0)
    assert both(vk, proof, load("multiplier", "public_1.json")) == (False, False)


def test_tampered_proof_rejected_by_both() -> None:
    vk, proof, public = vector("preimage64")
    # Move A to another valid curve point: still well formed, no longer a proof.
    a = (int(proof["pi_a"][0]), int(proof["pi_a"][1]))
    moved = copy.deepcopy(proof)
    moved["pi_a"] = g1_json(bn254.g1_add(a, bn254.G1_GENERATOR))  # type: ignore[arg-type]
    assert both(vk, moved, public) == (False, False)
    # C replaced by A.
    swapped = copy.deepcopy(proof)
    swapped["pi_c"] = proof["pi_a"]
    assert both(vk, swapped, public) == (False, False)


def test_off_curve_point_rejected_by_both() -> None:
    vk, proof, public = vector("multiplier")
    bad = copy.deepcopy(proof)
    bad["pi_a"][1] = str((int(bad["pi_a"][1]) + 1) % P)
    with pytest.raises(InvalidElementError, match="not on the curve"):
        Proof.from_json(bad)
    assert both(vk, bad, public) == (False, False)
    bad = copy.deepcopy(proof)
    bad["pi_b"][1][0] = str((int(bad["pi_b"][1][0]) + 1) % P)
    with pytest.raises(InvalidElementError, match="not on the twist"):
        Proof.from_json(bad)
    assert both(vk, bad, public) == (False, False)


def test_point_outside_g2_subgroup_rejected_by_both() -> None:
    vk, proof, public = vector("multiplier")
    bad = copy.deepcopy(proof)
    bad["pi_b"] = g2_json(random_twist_point(rng(70)))  # on the twist, not in the r-torsion
    with pytest.raises(InvalidElementError, match="subgroup"):
        Proof.from_json(bad)
    assert both(vk, bad, public) == (False, False)
    # The same for a verifying key point.
    bad_vk = copy.deepcopy(vk)
    bad_vk["vk_delta_2"] = g2_json(random_twist_point(rng(71)))
    with pytest.raises(InvalidElementError, match="vk_delta_2.*subgroup"):
        VerifyingKey.from_json(bad_vk)
    assert both(bad_vk, proof, public) == (False, False)


def test_out_of_range_coordinate_rejected_by_both() -> None:
    vk, proof, public = vector("multiplier")
    # x + p names the same field element: a lax parser reducing mod p would accept it.
    bad = copy.deepcopy(proof)
    bad["pi_a"][0] = str(int(bad["pi_a"][0]) + P)
    with pytest.raises(InvalidElementError, match="field modulus"):
        Proof.from_json(bad)
    assert both(vk, bad, public) == (False, False)
    bad = copy.deepcopy(proof)
    bad["pi_b"][0][1] = str(int(bad["pi_b"][0][1]) + P)
    assert both(vk, bad, public) == (False, False)


def test_out_of_range_public_input_rejected_by_both() -> None:
    vk, proof, public = vector("multiplier")
    # public + r is the same scalar mod r.
    wrapped = [str(int(public[0]) + R)]
    with pytest.raises(InvalidElementError, match="group order"):
        groth16.parse_public(wrapped)
    assert both(vk, proof, wrapped) == (False, False)
    key, pr = VerifyingKey.from_json(vk), Proof.from_json(proof)
    assert not groth16.groth16_verify(key, pr, [int(public[0]) + R])


def test_wrong_number_of_public_inputs_rejected_by_both() -> None:
    vk, proof, public = vector("preimage64")
    assert both(vk, proof, public[:-1]) == (False, False)
    assert both(vk, proof, [*public, "0"]) == (False, False)


# --------------------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.pop("pi_b"),
        lambda p: p.__setitem__("pi_a", p["pi_a"][:1]),
        lambda p: p["pi_a"].__setitem__(0, int(p["pi_a"][0])),
        lambda p: p["pi_a"].__setitem__(0, "0x1f"),
        lambda p: p["pi_a"].__setitem__(0, "01"),
        lambda p: p["pi_a"].__setitem__(0, "1" * 81),
        lambda p: p["pi_a"].__setitem__(0, "-1"),
        lambda p: p["pi_b"].__setitem__(0, ["1"]),
        lambda p: p.__setitem__("protocol", "plonk"),
        lambda p: p.__setitem__("curve", "bls12381"),
    ],
)
def test_malformed_proofs_are_refused(mutate: Any) -> None:
    _, proof, _ = vector("multiplier")
    mutate(proof)
    with pytest.raises(MalformedError):
        Proof.from_json(proof)


def test_malformed_keys_and_inputs_are_refused() -> None:
    vk, _, _ = vector("preimage64")
    for key in ("nPublic", "IC", "vk_alpha_1", "vk_gamma_2"):
        broken = copy.deepcopy(vk)
        del broken[key]
        with pytest.raises(MalformedError, match=key):
            VerifyingKey.from_json(broken)
    broken = copy.deepcopy(vk)
    broken["nPublic"] = 2
    with pytest.raises(InvalidElementError, match="IC"):
        VerifyingKey.from_json(broken)
    with pytest.raises(MalformedError):
        groth16.parse_public({"0": "1"})
    with pytest.raises(MalformedError):
        groth16.parse_public([1])


def test_identity_points_are_parsed() -> None:
    vk, proof, public = vector("multiplier")
    proof = copy.deepcopy(proof)
    proof["pi_c"] = ["0", "1", "0"]
    assert Proof.from_json(proof).c is None
    assert both(vk, proof, public) == (False, False)
    proof["pi_c"] = ["5", "1", "0"]
    with pytest.raises(InvalidElementError, match="infinity"):
        Proof.from_json(proof)


# --------------------------------------------------------------------------------------------------------
# p2pnode zk verify


def run_cli(tmp_path: Path, vk: Any, proof: Any, public: Any) -> int:
    import argparse

    from p2pnode.cli.zk import add_zk_args

    paths = []
    for name, obj in (("vk.json", vk), ("proof.json", proof), ("public.json", public)):
        path = tmp_path / name
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        paths.append(str(path))
    parser = argparse.ArgumentParser(prog="p2pnode")
    add_zk_args(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["zk", "verify", "--vk", paths[0], "--proof", paths[1], "--public", paths[2]])
    code: int = args.handler(args)
    return code


def test_cli_valid_and_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vk, proof, public = vector("preimage64")
    assert run_cli(tmp_path, vk, proof, public) == 0
    assert capsys.readouterr().out == "valid\n"
    assert run_cli(tmp_path, vk, proof, [public[0], public[1], "7"]) == 1
    assert capsys.readouterr().out == "invalid\n"
    bad = copy.deepcopy(proof)
    bad["pi_b"] = g2_json(random_twist_point(rng(80)))
    assert run_cli(tmp_path, vk, bad, public) == 1
    out = capsys.readouterr()
    assert out.out == "invalid\n" and "subgroup" in out.err
    assert run_cli(tmp_path, vk, proof, public[:1]) == 1
    assert capsys.readouterr().out == "invalid\n"


def test_cli_malformed_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vk, proof, public = vector("multiplier")
    for args in (
        (vk, "{not json", public),
        (vk, {"pi_a": []}, public),
        (proof, proof, public),
        (vk, proof, "{}"),
    ):
        assert run_cli(tmp_path, *args) == 2
        out = capsys.readouterr()
        assert out.out == ""
        assert out.err.startswith("p2pnode: error: ") and out.err.count("\n") == 1
