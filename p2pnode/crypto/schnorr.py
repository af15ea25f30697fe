"""Schnorr proofs of knowledge of a spending key on BN254 G1 (transparent transfers).

Statement: "I know x with P = x*G", bound to a message (the transfer digest) by Fiat-Shamir.

* Proof: ``R || s`` where ``R = k*G`` (64 bytes) and ``s = k + c*x mod r`` (32 bytes big-endian).
* Challenge: ``c = int(hash256("p2pnode/schnorr/v1", P, R, message)) mod r``. Hashing the public key
  makes the proof key-bound (no related-key forgery); hashing ``R`` as received makes the proof bound to
  its own bytes.
* Verification: ``s*G == R + c*P``, with ``P`` and ``R`` valid non-identity points and ``s < r``.

Batch verification checks ``sum_i w_i * (s_i*G - R_i - c_i*P_i) == 0`` with independent 128-bit random
weights: one multi-scalar multiplication for the whole batch. A forged item passes with probability at most
2**-128. On failure the batch is bisected, so the result is exact per item.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from p2pnode.crypto.bn254 import CURVE_ORDER, g1_decode, g1_encode, g1_msm_is_identity, g1_mul_base
from p2pnode.crypto.hashing import hash256

__all__ = ["SpendingKey", "address_of", "schnorr_batch_verify", "schnorr_verify"]

CHALLENGE_DOMAIN = b"p2pnode/schnorr/v1"
NONCE_DOMAIN = b"p2pnode/schnorr/nonce/v1"
ADDRESS_DOMAIN = b"p2pnode/address/v1"

PUBLIC_LEN = 64
PROOF_LEN = 96
ADDRESS_LEN = 20

_R = CURVE_ORDER
_WEIGHT_BITS = 128


def _challenge(public: bytes, r_bytes: bytes, message: bytes) -> int:
    return int.from_bytes(hash256(CHALLENGE_DOMAIN, public, r_bytes, message), "big") % _R


class SpendingKey:
    """A BN254 scalar ``1 <= x < r`` that owns an account. Immutable after construction."""

    __slots__ = ("_public", "_secret")

    _secret: int
    _public: bytes

    def __init__(self, secret: int) -> None:
        if not 1 <= secret < _R:
            raise ValueError("spending key must be in [1, r)")
        pt = g1_mul_base(secret)
        assert pt is not None  # secret is in [1, r)
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "_public", g1_encode(pt))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SpendingKey is immutable")

    @classmethod
    def generate(cls) -> SpendingKey:
        """A fresh uniformly random key from ``secrets``."""
        return cls(secrets.randbelow(_R - 1) + 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> SpendingKey:
        """Parse a 32-byte big-endian scalar. Raises ``ValueError`` unless ``1 <= k < r``."""
        if len(data) != 32:
            raise ValueError(f"spending key must be 32 bytes, got {len(data)}")
        return cls(int.from_bytes(data, "big"))

    def to_bytes(self) -> bytes:
        """The 32-byte big-endian scalar; treat as secret."""
        return self._secret.to_bytes(32, "big")

    @property
    def public(self) -> bytes:
        """The 64-byte encoding of ``x*G`` (computed once)."""
        return self._public

    @property
    def address(self) -> bytes:
        """``address_of(self.public)``."""
        return address_of(self._public)

    def prove(self, message: bytes) -> bytes:
        """A 96-byte proof ``R || s`` of knowledge of this key, bound to ``message``.

        The nonce hashes the secret key, the message and 32 fresh random bytes: a broken RNG still cannot
        repeat a nonce across different messages, and a fault cannot be replayed deterministically. 64
        bytes of hash output are reduced mod r so the nonce has no measurable bias.
        """
        secret = self.to_bytes()
        fresh = secrets.token_bytes(32)
        while True:
            wide = hash256(NONCE_DOMAIN, secret, message, fresh, b"\x00") + hash256(
                NONCE_DOMAIN, secret, message, fresh, b"\x01"
            )
            k = int.from_bytes(wide, "big") % _R
            if k:
                break
            fresh = secrets.token_bytes(32)  # probability 2**-254; kept for correctness
        pt = g1_mul_base(k)
        assert pt is not None
        r_bytes = g1_encode(pt)
        c = _challenge(self._public, r_bytes, message)
        s = (k + c * self._secret) % _R
        return r_bytes + s.to_bytes(32, "big")

    def __repr__(self) -> str:
        return f"SpendingKey(address={self.address.hex()})"


def address_of(public: bytes) -> bytes:
    """The 20-byte account address of a 64-byte public key. Does not validate the key."""
    return hash256(ADDRESS_DOMAIN, public)[:ADDRESS_LEN]


# A parsed item: (public point, R point, s, c).
_Parsed = tuple[tuple[int, int], tuple[int, int], int, int]


def _parse(public: object, message: object, proof: object) -> _Parsed | None:
    """Cheap structural checks; ``None`` for anything malformed."""
    if not isinstance(public, bytes | bytearray) or not isinstance(proof, bytes | bytearray):
        return None
    if not isinstance(message, bytes | bytearray):
        return None
    if len(public) != PUBLIC_LEN or len(proof) != PROOF_LEN:
        return None
    s = int.from_bytes(proof[64:], "big")
    if s >= _R:
        return None
    public = bytes(public)
    r_bytes = bytes(proof[:64])
    try:
        p_pt = g1_decode(public)
        r_pt = g1_decode(r_bytes)
    except ValueError:
        return None
    c = _challenge(public, r_bytes, bytes(message))
    return p_pt, r_pt, s, c


def _check_one(item: _Parsed) -> bool:
    p_pt, r_pt, s, c = item
    # s*G - c*P - R == 0
    return g1_msm_is_identity([p_pt, r_pt], [-c, -1], base_scalar=s)


def _check_many(items: Sequence[_Parsed]) -> bool:
    if len(items) == 1:
        return _check_one(items[0])
    points: list[tuple[int, int]] = []
    scalars: list[int] = []
    base = 0
    for p_pt, r_pt, s, c in items:
        # Nonzero weights: a zero weight would drop that item from the check.
        w = secrets.randbelow((1 << _WEIGHT_BITS) - 1) + 1
        base += w * s
        points.append(r_pt)
        scalars.append(-w)
        points.append(p_pt)
        scalars.append(-w * c)
    return g1_msm_is_identity(points, scalars, base_scalar=base)


def _bisect(items: Sequence[_Parsed], idx: Sequence[int], out: list[bool], known_bad: bool = False) -> None:
    """Mark ``out[i] = True`` for every valid item; ``known_bad`` skips a check whose failure is implied."""
    if not known_bad and _check_many(items):
        for i in idx:
            out[i] = True
        return
    if len(items) == 1:
        return
    mid = len(items) // 2
    left_ok = _check_many(items[:mid])
    if left_ok:
        for i in idx[:mid]:
            out[i] = True
    else:
        _bisect(items[:mid], idx[:mid], out, known_bad=True)
    # If the left half passed, the failure of the whole is in the right half.
    _bisect(items[mid:], idx[mid:], out, known_bad=left_ok)


def schnorr_verify(public: bytes, message: bytes, proof: bytes) -> bool:
    """True iff ``proof`` proves knowledge of the key of ``public``, bound to ``message``.

    Error handling: never raises on malformed input (wrong lengths or types, invalid points, ``s >= r``):
    the answer is ``False``.
    """
    item = _parse(public, message, proof)
    return item is not None and _check_one(item)


def schnorr_batch_verify(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Verify many ``(public, message, proof)`` triples: ``result[i] == schnorr_verify(*items[i])``.

    Malformed items are ``False`` and are excluded before the batch check, so they cost nothing and poison
    nothing. An all-valid batch costs one multi-scalar multiplication; each invalid item adds about
    ``2*log2(n)`` sub-batch checks.
    """
    out = [False] * len(items)
    parsed: list[_Parsed] = []
    idx: list[int] = []
    for i, triple in enumerate(items):
        try:
            public, message, proof = triple
        except (TypeError, ValueError):
            continue
        item = _parse(public, message, proof)
        if item is not None:
            parsed.append(item)
            idx.append(i)
    if parsed:
        _bisect(parsed, idx, out)
    return out
