"""Groth16 verification on BN254, reading snarkjs's JSON formats as they are.

Formats (snarkjs ``zkey export verificationkey`` and ``groth16 prove``):

* verifying key: ``{"protocol": "groth16", "curve": "bn128", "nPublic": n, "vk_alpha_1": G1,
  "vk_beta_2": G2, "vk_gamma_2": G2, "vk_delta_2": G2, "IC": [G1] * (n + 1), ...}`` (other keys, such as
  ``vk_alphabeta_12``, are ignored);
* proof: ``{"pi_a": G1, "pi_b": G2, "pi_c": G1, "protocol": "groth16", "curve": "bn128"}``;
* public inputs: a list of decimal strings;
* a G1 point is ``[x, y, z]`` and a G2 point ``[[x_c0, x_c1], [y_c0, y_c1], [z_c0, z_c1]]`` in projective
  form with ``z == 1`` (or the identity ``[0, 1, 0]`` / ``[[0,0],[1,0],[0,0]]``); every coordinate is a
  decimal string. An Fp2 element is listed as ``[c0, c1]`` meaning ``c0 + c1*u`` (the EVM precompile's
  order is the reverse; snarkjs's is not).

The checks, cheap ones first, none skipped:

1. shape: the keys above, lists of the right lengths, canonical decimal strings of at most 80 digits;
2. every coordinate below p, every public input below r, ``len(public) == nPublic == len(IC) - 1``;
3. every point on its curve; G2 points in the order-r subgroup (the twist has a large cofactor; G1 has
   none);
4. the equation ``e(A, B) == e(alpha, beta) * e(vk_x, gamma) * e(C, delta)`` with
   ``vk_x = IC[0] + sum(public[i] * IC[i+1])``, checked as one product of pairings.

Constructors (``VerifyingKey.from_json``, ``Proof.from_json``, :func:`parse_public`) do 1-3 and raise
:class:`MalformedError` (wrong shape) or :class:`InvalidElementError` (a value out of range, off the curve
or outside the subgroup). The verify functions never raise on a proof or statement: they answer False.

Batch verification of n proofs under one key draws independent 128-bit weights ``r_i`` from ``secrets``
and checks ``prod e(-r_i A_i, B_i) * e(sum(r_i) alpha, beta) * e(sum(r_i vk_x_i), gamma)
* e(sum(r_i C_i), delta) == 1``: one Miller loop over n + 3 pairs and one final exponentiation. A false
batch accepts with probability at most 2^-128 (the weights are unknown to whoever made the proofs).

A proof is malleable (anyone can re-randomize a valid one), so it must never serve as an identifier.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p2pnode.crypto import bn254
from p2pnode.crypto.bn254 import CURVE_ORDER, FIELD_MODULUS, G1Point
from p2pnode.crypto.pairing import (
    Fp12,
    G2Point,
    G2Prepared,
    g2_in_subgroup,
    g2_is_on_curve,
    miller_loop,
    pairing_product_is_one,
    prepare_g2,
)

__all__ = [
    "InvalidElementError",
    "MalformedError",
    "Proof",
    "VerifyingKey",
    "groth16_batch_verify",
    "groth16_verify",
    "parse_public",
]

_P = FIELD_MODULUS
_R = CURVE_ORDER
# p and r have 77 decimal digits; anything longer is rejected before int() runs on it.
_MAX_DIGITS = 80
# Bounds the work a hostile verifying key can cause (snarkjs circuits with more public inputs than this are
# not something a payment network verifies).
MAX_PUBLIC_INPUTS = 1024
# Batch weights: at least 128 bits from a secure source.
_WEIGHT_BITS = 128


class MalformedError(ValueError):
    """The JSON does not have the shape snarkjs writes (missing key, wrong type or length, bad number)."""


class InvalidElementError(ValueError):
    """A well-formed value that is not a valid element: coordinate >= p, public input >= r, a point off its
    curve or outside the prime-order subgroup, or a count that does not match the key."""


# --------------------------------------------------------------------------------------------------------
# Parsing


def _decimal(value: Any, what: str) -> int:
    if not isinstance(value, str) or not (0 < len(value) <= _MAX_DIGITS) or not value.isascii():
        raise MalformedError(f"{what}: expected a decimal string")
    if not value.isdigit() or (len(value) > 1 and value[0] == "0"):
        raise MalformedError(f"{what}: expected a canonical decimal string")
    return int(value)


def _coordinate(value: Any, what: str) -> int:
    v = _decimal(value, what)
    if v >= _P:
        raise InvalidElementError(f"{what}: coordinate not below the field modulus")
    return v


def _list(value: Any, length: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != length:
        raise MalformedError(f"{what}: expected a list of {length}")
    return value


def _g1(value: Any, what: str) -> G1Point | None:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise MalformedError(f"{what}: expected a G1 point [x, y, z]")
    x = _coordinate(value[0], f"{what}.x")
    y = _coordinate(value[1], f"{what}.y")
    z = _coordinate(value[2], f"{what}.z") if len(value) == 3 else 1
    if z == 0:
        if (x, y) != (0, 1):
            raise InvalidElementError(f"{what}: non-canonical point at infinity")
        return None
    if z != 1:
        raise InvalidElementError(f"{what}: z must be 1 (affine) or 0 (identity)")
    if not bn254.g1_is_on_curve((x, y)):
        raise InvalidElementError(f"{what}: point not on the curve")
    # G1 of BN254 has cofactor 1: on the curve means in the subgroup.
    return (x, y)


def _fp2(value: Any, what: str) -> tuple[int, int]:
    c = _list(value, 2, what)
    return (_coordinate(c[0], f"{what}[0]"), _coordinate(c[1], f"{what}[1]"))


def _g2(value: Any, what: str) -> G2Point | None:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise MalformedError(f"{what}: expected a G2 point [[x0, x1], [y0, y1], [z0, z1]]")
    x = _fp2(value[0], f"{what}.x")
    y = _fp2(value[1], f"{what}.y")
    z = _fp2(value[2], f"{what}.z") if len(value) == 3 else (1, 0)
    if z == (0, 0):
        if (x, y) != ((0, 0), (1, 0)):
            raise InvalidElementError(f"{what}: non-canonical point at infinity")
        return None
    if z != (1, 0):
        raise InvalidElementError(f"{what}: z must be 1 (affine) or 0 (identity)")
    q = (x, y)
    if not g2_is_on_curve(q):
        raise InvalidElementError(f"{what}: point not on the twist curve")
    if not g2_in_subgroup(q):
        raise InvalidElementError(f"{what}: point not in the order-r subgroup")
    return q


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"{what}: expected a JSON object")
    return value


def _key(obj: dict[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise MalformedError(f"{what}: missing {key!r}")
    return obj[key]


def _check_header(obj: dict[str, Any], what: str) -> None:
    # snarkjs writes both keys into keys and proofs; when present they must say Groth16 on BN254.
    if obj.get("protocol", "groth16") != "groth16":
        raise MalformedError(f"{what}: protocol is {obj.get('protocol')!r}, expected 'groth16'")
    if obj.get("curve", "bn128") not in ("bn128", "bn254"):
        raise MalformedError(f"{what}: curve is {obj.get('curve')!r}, expected 'bn128'")


def parse_public(obj: Any) -> tuple[int, ...]:
    """Public inputs from snarkjs's ``public.json`` (a list of decimal strings), each below r.

    Raises :class:`MalformedError` or :class:`InvalidElementError`.
    """
    if not isinstance(obj, list):
        raise MalformedError("public inputs: expected a JSON list")
    if len(obj) > MAX_PUBLIC_INPUTS:
        raise MalformedError(f"public inputs: more than {MAX_PUBLIC_INPUTS}")
    out: list[int] = []
    for i, value in enumerate(obj):
        v = _decimal(value, f"public[{i}]")
        if v >= _R:
            raise InvalidElementError(f"public[{i}]: not below the group order r")
        out.append(v)
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyingKey:
    """A checked Groth16 verifying key (build it with :meth:`from_json`)."""

    alpha: G1Point | None
    beta: G2Point | None
    gamma: G2Point | None
    delta: G2Point | None
    ic: tuple[G1Point | None, ...]

    @property
    def n_public(self) -> int:
        return len(self.ic) - 1

    @classmethod
    def from_json(cls, obj: Any) -> VerifyingKey:
        """Parse and check snarkjs's ``verification_key.json`` (already decoded from JSON).

        Raises :class:`MalformedError` or :class:`InvalidElementError` naming the field.
        """
        what = "verifying key"
        vk = _object(obj, what)
        _check_header(vk, what)
        n = _key(vk, "nPublic", what)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_PUBLIC_INPUTS:
            raise MalformedError(f"{what}: nPublic must be an integer in [0, {MAX_PUBLIC_INPUTS}]")
        ic_raw = _key(vk, "IC", what)
        if not isinstance(ic_raw, list) or len(ic_raw) != n + 1:
            raise InvalidElementError(f"{what}: IC must list nPublic + 1 = {n + 1} points")
        return cls(
            alpha=_g1(_key(vk, "vk_alpha_1", what), "vk_alpha_1"),
            beta=_g2(_key(vk, "vk_beta_2", what), "vk_beta_2"),
            gamma=_g2(_key(vk, "vk_gamma_2", what), "vk_gamma_2"),
            delta=_g2(_key(vk, "vk_delta_2", what), "vk_delta_2"),
            ic=tuple(_g1(pt, f"IC[{i}]") for i, pt in enumerate(ic_raw)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Proof:
    """A checked Groth16 proof (build it with :meth:`from_json`): A and C in G1, B in G2."""

    a: G1Point | None
    b: G2Point | None
    c: G1Point | None

    @classmethod
    def from_json(cls, obj: Any) -> Proof:
        """Parse and check snarkjs's ``proof.json`` (already decoded from JSON).

        Raises :class:`MalformedError` or :class:`InvalidElementError` naming the field.
        """
        what = "proof"
        pr = _object(obj, what)
        _check_header(pr, what)
        return cls(
            a=_g1(_key(pr, "pi_a", what), "pi_a"),
            b=_g2(_key(pr, "pi_b", what), "pi_b"),
            c=_g1(_key(pr, "pi_c", what), "pi_c"),
        )


# --------------------------------------------------------------------------------------------------------
# Verification


class _Prepared:
    __slots__ = ("alpha_beta", "beta", "delta", "gamma")

    def __init__(self, vk: VerifyingKey) -> None:
        self.beta = _prepare(vk.beta)
        self.gamma = _prepare(vk.gamma)
        self.delta = _prepare(vk.delta)
        # The Miller-loop value of e(alpha, beta): a single verification multiplies it in instead of
        # running a fourth pair.
        self.alpha_beta: Fp12 = miller_loop([(vk.alpha, self.beta)])


def _prepare(q: G2Point | None) -> G2Prepared | None:
    return None if q is None else prepare_g2(q)


@functools.lru_cache(maxsize=16)
def _prepared(vk: VerifyingKey) -> _Prepared:
    return _Prepared(vk)


def _neg(pt: G1Point | None) -> G1Point | None:
    return None if pt is None else bn254.g1_neg(pt)


def _statement_ok(vk: VerifyingKey, public: Sequence[int]) -> bool:
    return len(public) == vk.n_public and all(0 <= s < _R for s in public)


def _vk_x(vk: VerifyingKey, public: Sequence[int]) -> G1Point | None:
    points = [pt for pt in vk.ic if pt is not None]
    scalars = [k for pt, k in zip(vk.ic, (1, *public), strict=True) if pt is not None]
    return bn254.msm(points, scalars)


def groth16_verify(vk: VerifyingKey, proof: Proof, public: Sequence[int]) -> bool:
    """True iff ``proof`` is valid for ``public`` under ``vk``. Never raises on a wrong statement.

    ``vk`` and ``proof`` are checked when built; ``public`` is checked here (count and range), so a
    statement from :func:`parse_public` or from anywhere else is safe to pass.
    """
    if not _statement_ok(vk, public):
        return False
    prep = _prepared(vk)
    pairs = [(_neg(proof.a), proof.b), (_vk_x(vk, public), prep.gamma), (proof.c, prep.delta)]
    return pairing_product_is_one(pairs, extra=prep.alpha_beta)


def groth16_batch_verify(vk: VerifyingKey, items: Sequence[tuple[Proof, Sequence[int]]]) -> bool:
    """True iff every ``(proof, public)`` in ``items`` is valid under ``vk`` (except with probability
    2^-128); an empty batch is valid. False says only that at least one is invalid: a caller that needs
    to know which verifies them one by one.
    """
    if not items:
        return True
    if not all(_statement_ok(vk, public) for _, public in items):
        return False
    prep = _prepared(vk)
    n_ic = len(vk.ic)
    ic_scalars = [0] * n_ic
    c_points: list[G1Point] = []
    c_scalars: list[int] = []
    pairs: list[tuple[G1Point | None, G2Point | G2Prepared | None]] = []
    weight_sum = 0
    for proof, public in items:
        w = secrets.randbelow((1 << _WEIGHT_BITS) - 1) + 1  # uniform in [1, 2^128)
        weight_sum += w
        ic_scalars[0] += w
        for j, s in enumerate(public, start=1):
            ic_scalars[j] = (ic_scalars[j] + w * s) % _R
        if proof.c is not None:
            c_points.append(proof.c)
            c_scalars.append(w)
        if proof.a is not None:
            pairs.append((bn254.g1_mul(bn254.g1_neg(proof.a), w), proof.b))
    ic_points = [pt for pt in vk.ic if pt is not None]
    ic_used = [k for pt, k in zip(vk.ic, ic_scalars, strict=True) if pt is not None]
    alpha = None if vk.alpha is None else bn254.g1_mul(vk.alpha, weight_sum)
    pairs.append((alpha, prep.beta))
    pairs.append((bn254.msm(ic_points, ic_used), prep.gamma))
    pairs.append((bn254.msm(c_points, c_scalars), prep.delta))
    return pairing_product_is_one(pairs)


def proof_from_bytes(data: bytes) -> Proof:
    """A proof from its 256-byte wire form: A.x, A.y, B.x.c0, B.x.c1, B.y.c0, B.y.c1, C.x, C.y, each a
    32-byte big-endian integer (Fp2 in snarkjs's [c0, c1] order). Raises like :meth:`Proof.from_json`."""
    if len(data) != 256:
        raise MalformedError(f"a proof is 256 bytes, got {len(data)}")
    v = [str(int.from_bytes(data[i : i + 32], "big")) for i in range(0, 256, 32)]
    return Proof.from_json(
        {
            "pi_a": [v[0], v[1], "1"],
            "pi_b": [[v[2], v[3]], [v[4], v[5]], ["1", "0"]],
            "pi_c": [v[6], v[7], "1"],
            "protocol": "groth16",
            "curve": "bn128",
        }
    )


def proof_to_bytes(obj: Any) -> bytes:
    """The 256-byte wire form of a snarkjs proof JSON (affine coordinates, z == 1)."""
    a, b, c = obj["pi_a"], obj["pi_b"], obj["pi_c"]
    values = [a[0], a[1], b[0][0], b[0][1], b[1][0], b[1][1], c[0], c[1]]
    return b"".join(int(x).to_bytes(32, "big") for x in values)
