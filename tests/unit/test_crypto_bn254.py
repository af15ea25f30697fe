import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ecc import optimized_bn128 as oracle

from p2pnode.crypto import CURVE_ORDER, FIELD_MODULUS, bn254, g1_decode, g1_encode

scalars = st.integers(min_value=0, max_value=CURVE_ORDER - 1)
nonzero = st.integers(min_value=1, max_value=CURVE_ORDER - 1)
FEW = settings(max_examples=25, deadline=None)


def oracle_mul(k: int, base: tuple[int, int] = (1, 2)) -> tuple[int, int] | None:
    pt = (oracle.FQ(base[0]), oracle.FQ(base[1]), oracle.FQ(1))
    res = oracle.multiply(pt, k % CURVE_ORDER)
    if oracle.is_inf(res):
        return None
    x, y = oracle.normalize(res)
    return (int(x), int(y))


def test_constants_match_py_ecc() -> None:
    assert FIELD_MODULUS == oracle.field_modulus
    assert CURVE_ORDER == oracle.curve_order
    assert bn254.G1_GENERATOR == (int(oracle.G1[0]), int(oracle.G1[1]))


def test_glv_constants() -> None:
    p, r = FIELD_MODULUS, CURVE_ORDER
    beta, lam = bn254._BETA, bn254._LAMBDA
    assert beta != 1 and pow(beta, 3, p) == 1
    assert lam != 1 and pow(lam, 3, r) == 1
    assert oracle_mul(lam) == (beta, 2)  # phi(G) == lambda * G
    assert (bn254._A1 + bn254._B1 * lam) % r == 0
    assert (bn254._A2 + bn254._B2 * lam) % r == 0
    assert bn254._A1 * bn254._B2 - bn254._A2 * bn254._B1 == r


@FEW
@given(scalars)
def test_glv_split_is_short_and_exact(k: int) -> None:
    k1, k2 = bn254._glv_split(k)
    assert (k1 + k2 * bn254._LAMBDA - k) % CURVE_ORDER == 0
    assert abs(k1).bit_length() <= 128 and abs(k2).bit_length() <= 128


@FEW
@given(scalars)
def test_mul_base_matches_py_ecc(k: int) -> None:
    assert bn254.g1_mul_base(k) == oracle_mul(k)


@FEW
@given(nonzero, st.integers(min_value=-(2**300), max_value=2**300))
def test_mul_matches_py_ecc(a: int, k: int) -> None:
    base = bn254.g1_mul_base(a)
    assert base is not None
    assert bn254.g1_mul(base, k) == oracle_mul(k, base)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 15, 16, 17, CURVE_ORDER - 1, CURVE_ORDER, CURVE_ORDER + 1, 2**255])
def test_mul_edge_scalars(k: int) -> None:
    assert bn254.g1_mul_base(k) == oracle_mul(k)
    assert bn254.g1_mul((1, 2), k) == oracle_mul(k)


def test_add_and_neg() -> None:
    g = bn254.G1_GENERATOR
    assert bn254.g1_add(g, g) == oracle_mul(2)
    assert bn254.g1_add(g, oracle_mul(2)) == oracle_mul(3)
    assert bn254.g1_add(g, bn254.g1_neg(g)) is None
    assert bn254.g1_add(None, g) == g
    assert bn254.g1_add(g, None) == g


@pytest.mark.parametrize("n", [1, 2, 5, 40, 130])
def test_msm_matches_sum_of_products(n: int) -> None:
    # Sizes cover both the interleaved-wNAF and the bucket algorithm; scalars mix full-size, 128-bit,
    # negative and zero values, and a repeated point exercises the doubling case inside the buckets.
    import random

    rng = random.Random(n)
    points = [oracle_mul(rng.randrange(1, CURVE_ORDER)) for _ in range(n)]
    pts = [p for p in points if p is not None]
    pts[-1] = pts[0]
    ks = [
        [rng.randrange(CURVE_ORDER), rng.getrandbits(128), -rng.randrange(CURVE_ORDER), 0][i % 4]
        for i in range(n)
    ]
    expected: tuple[int, int] | None = None
    for pt, k in zip(pts, ks, strict=True):
        expected = bn254.g1_add(expected, oracle_mul(k, pt))
    assert bn254.msm(pts, ks) == expected
    terms = bn254._split_terms(pts, ks)
    if terms:
        assert bn254._to_affine(bn254._pippenger_jac(terms)) == expected
        assert bn254._to_affine(bn254._straus_jac(terms)) == expected


def test_msm_cancelling_terms_give_identity() -> None:
    p = oracle_mul(12345)
    assert p is not None
    assert bn254.msm([p, p], [7, -7]) is None
    assert bn254.msm([], []) is None
    assert bn254.g1_msm_is_identity([p], [-1], base_scalar=12345)
    assert bn254.g1_msm_is_identity([p, p], [-3, 2], base_scalar=12345)
    assert not bn254.g1_msm_is_identity([p], [-1], base_scalar=12344)


@FEW
@given(nonzero)
def test_encode_decode_round_trip(k: int) -> None:
    pt = bn254.g1_mul_base(k)
    assert pt is not None
    data = g1_encode(pt)
    assert len(data) == 64
    assert g1_decode(data) == pt
    assert g1_encode(g1_decode(data)) == data


def test_decode_generator_bytes() -> None:
    assert g1_decode((1).to_bytes(32, "big") + (2).to_bytes(32, "big")) == (1, 2)


def enc(x: int, y: int) -> bytes:
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (enc(1, 3), "not on the curve"),
        (enc(0, 0), "identity"),
        (enc(1 + FIELD_MODULUS, 2), "field modulus"),  # (1, 2) again, but x not reduced
        (enc(1, 2 + FIELD_MODULUS), "field modulus"),
        (enc(1, FIELD_MODULUS - 2 + FIELD_MODULUS), "field modulus"),
        (enc(2**256 - 1, 2**256 - 1), "field modulus"),
        (enc(1, 2)[:63], "64 bytes"),
        (enc(1, 2) + b"\x00", "64 bytes"),
        (b"", "64 bytes"),
        (enc(1, 2)[:32], "64 bytes"),
    ],
)
def test_decode_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        g1_decode(data)


def test_decode_accepts_negated_generator() -> None:
    assert g1_decode(enc(1, FIELD_MODULUS - 2)) == (1, FIELD_MODULUS - 2)
