"""The fast BN254 pairing (p2pnode.crypto.pairing) against py_ecc, the reference.

py_ecc takes about 0.25 s per pairing, so the cross-checks use a few fixed-seed random points.
"""

import random

import pytest
from py_ecc import optimized_bn128 as oracle

from p2pnode.crypto import bn254, pairing
from p2pnode.crypto.bn254 import CURVE_ORDER as R
from p2pnode.crypto.bn254 import FIELD_MODULUS as P
from p2pnode.crypto.pairing import FP12_ONE, G2_GENERATOR

# The twist E'(Fp2) has order r * c; c = 2p - r is square-free with these prime factors.
COFACTOR = 2 * P - R
COFACTOR_PRIMES = (
    10069,
    5864401,
    1875725156269,
    197620364512881247228717050342013327560683201906968909,
)


def rng(seed: int) -> random.Random:
    return random.Random(seed)


# --------------------------------------------------------------------------------------------------------
# Conversions to py_ecc


def to_oracle_fp12(f: pairing.Fp12) -> oracle.FQ12:
    """Our tower element as py_ecc's FQ12 = Fp[w]/(w^12 - 18 w^6 + 82), where w^6 = 9 + u."""
    coeffs = [0] * 12
    for pos, k in enumerate(pairing._W_POWER):
        c0, c1 = f[2 * pos], f[2 * pos + 1]
        coeffs[k] += c0 - 9 * c1  # u = w^6 - 9
        coeffs[k + 6] += c1
    return oracle.FQ12([c % P for c in coeffs])


def oracle_g2(q: pairing.G2Point) -> tuple[oracle.FQ2, oracle.FQ2, oracle.FQ2]:
    return (oracle.FQ2(list(q[0])), oracle.FQ2(list(q[1])), oracle.FQ2.one())


def oracle_g1(pt: tuple[int, int]) -> tuple[oracle.FQ, oracle.FQ, oracle.FQ]:
    return (oracle.FQ(pt[0]), oracle.FQ(pt[1]), oracle.FQ(1))


def random_fp12(r: random.Random) -> pairing.Fp12:
    return tuple(r.randrange(P) for _ in range(12))  # type: ignore[return-value]


def random_g1(r: random.Random) -> tuple[tuple[int, int], int]:
    k = r.randrange(1, R)
    pt = bn254.g1_mul_base(k)
    assert pt is not None
    return pt, k


def random_g2(r: random.Random) -> tuple[pairing.G2Point, int]:
    k = r.randrange(1, R)
    q = pairing.g2_mul(G2_GENERATOR, k)
    assert q is not None
    return q, k


def fp2_sqrt(a: tuple[int, int]) -> tuple[int, int] | None:
    """A square root in Fp2 (p = 3 mod 4), or None for a non-square."""

    def mul(x: tuple[int, int], y: tuple[int, int]) -> tuple[int, int]:
        return ((x[0] * y[0] - x[1] * y[1]) % P, (x[0] * y[1] + x[1] * y[0]) % P)

    def power(x: tuple[int, int], e: int) -> tuple[int, int]:
        out = (1, 0)
        for bit in bin(e)[2:]:
            out = mul(out, out)
            if bit == "1":
                out = mul(out, x)
        return out

    a1 = power(a, (P - 3) // 4)
    alpha = mul(mul(a1, a1), a)
    x0 = mul(a1, a)
    if alpha == (P - 1, 0):
        x = mul((0, 1), x0)
    else:
        x = mul(power(((1 + alpha[0]) % P, alpha[1]), (P - 1) // 2), x0)
    return x if mul(x, x) == (a[0] % P, a[1] % P) else None


def random_twist_point(r: random.Random) -> pairing.G2Point:
    """A uniformly random point of E'(Fp2): almost surely NOT in G2 (the cofactor is about 2^254)."""
    while True:
        x = (r.randrange(P), r.randrange(P))
        xx = ((x[0] * x[0] - x[1] * x[1]) % P, 2 * x[0] * x[1] % P)
        xxx = ((xx[0] * x[0] - xx[1] * x[1]) % P, (xx[0] * x[1] + xx[1] * x[0]) % P)
        rhs = ((xxx[0] + pairing._TWIST_B[0]) % P, (xxx[1] + pairing._TWIST_B[1]) % P)
        y = fp2_sqrt(rhs)
        if y is not None:
            return (x, y)


# --------------------------------------------------------------------------------------------------------
# Constants and fields


def test_constants_match_py_ecc() -> None:
    assert G2_GENERATOR == (tuple(oracle.G2[0].coeffs), tuple(oracle.G2[1].coeffs))
    assert pairing._TWIST_B == tuple(int(c) for c in oracle.b2.coeffs)
    assert pairing._ATE_LOOP == 29793968203157093288


@pytest.mark.parametrize("seed", range(3))
def test_fp12_arithmetic_matches_py_ecc(seed: int) -> None:
    r = rng(seed)
    a, b = random_fp12(r), random_fp12(r)
    oa, ob = to_oracle_fp12(a), to_oracle_fp12(b)
    assert to_oracle_fp12(pairing.fp12_mul(a, b)) == oa * ob
    assert to_oracle_fp12(pairing.fp12_sqr(a)) == oa * oa
    assert to_oracle_fp12(pairing.fp12_inv(a)) == oa.inv()
    assert to_oracle_fp12(pairing.fp12_frobenius(a, 1)) == oa**P
    assert to_oracle_fp12(pairing.fp12_frobenius(a, 2)) == oa ** (P * P)
    assert pairing.fp12_frobenius(a, 3) == pairing.fp12_frobenius(pairing.fp12_frobenius(a, 2), 1)
    assert to_oracle_fp12(pairing.fp12_conjugate(a)) == oa ** (P**6)


def test_sparse_line_product_is_a_full_product() -> None:
    r = rng(10)
    f = random_fp12(r)
    b0, b1, c0, c1 = (r.randrange(P) for _ in range(4))
    line = (1, 0, 0, 0, 0, 0, b0, b1, c0, c1, 0, 0)
    assert pairing._mul_by_line(f, b0, b1, c0, c1) == pairing.fp12_mul(f, line)


def test_cyclotomic_squaring_and_exponentiation() -> None:
    f = random_fp12(rng(11))
    # Map into the cyclotomic subgroup with the easy part of the final exponentiation.
    g = pairing.fp12_mul(pairing.fp12_conjugate(f), pairing.fp12_inv(f))
    g = pairing.fp12_mul(pairing.fp12_frobenius(g, 2), g)
    assert pairing._cyclotomic_sqr(g) == pairing.fp12_sqr(g)
    assert pairing._cyclotomic_exp_x(g) == pairing.fp12_pow(g, pairing.BN_X)


def test_final_exponentiation_is_the_exact_exponent() -> None:
    f = random_fp12(rng(12))
    assert pairing.final_exponentiation(f) == pairing.fp12_pow(f, (P**12 - 1) // R)


# --------------------------------------------------------------------------------------------------------
# G2


def test_g2_arithmetic_matches_py_ecc() -> None:
    r = rng(20)
    q, k = random_g2(r)
    expected = oracle.normalize(oracle.multiply(oracle.G2, k))
    assert q == (tuple(expected[0].coeffs), tuple(expected[1].coeffs))
    assert pairing.g2_is_on_curve(q)
    assert pairing.g2_add(q, pairing.g2_neg(q)) is None
    assert pairing.g2_add(q, q) == pairing.g2_mul(q, 2)
    assert pairing.g2_mul(G2_GENERATOR, R) is None


def test_psi_is_multiplication_by_p_on_g2() -> None:
    q, _ = random_g2(rng(21))
    assert pairing.g2_psi(q) == pairing.g2_mul(q, P % R)


def test_g2_on_curve_rejects_bad_points() -> None:
    (x0, x1), (y0, y1) = G2_GENERATOR
    assert not pairing.g2_is_on_curve(((x0, x1), (y0 + 1, y1)))
    assert not pairing.g2_is_on_curve(((x0 + P, x1), (y0, y1)))  # same value, non-canonical


def test_cofactor_factorization() -> None:
    prod = 1
    for q in COFACTOR_PRIMES:
        prod *= q
        assert all(pow(a, q - 1, q) == 1 for a in (2, 3, 5, 7, 11, 13))  # prime (Fermat, fine here)
    assert prod == COFACTOR
    # A random twist point times r * c is the identity: #E'(Fp2) = r * c.
    assert pairing.g2_mul(random_twist_point(rng(22)), R * COFACTOR) is None


def test_subgroup_check_accepts_g2() -> None:
    r = rng(23)
    assert pairing.g2_in_subgroup(G2_GENERATOR)
    for _ in range(3):
        assert pairing.g2_in_subgroup(random_g2(r)[0])


@pytest.mark.parametrize("ell", COFACTOR_PRIMES)
def test_subgroup_check_rejects_every_cofactor_prime(ell: int) -> None:
    # The check is an endomorphism whose kernel contains G2. Each prime ell | c divides #E' exactly once, so
    # the ell-part of E' is cyclic of order ell: rejecting one point of order ell rejects all of it. With
    # every ell rejected, the kernel is exactly G2.
    r = rng(ell)
    while True:
        pt = pairing.g2_mul(random_twist_point(r), R * (COFACTOR // ell))
        if pt is not None:
            break
    assert pairing.g2_mul(pt, ell) is None
    assert pairing.g2_is_on_curve(pt)
    assert not pairing.g2_in_subgroup(pt)


def test_subgroup_check_agrees_with_multiplying_by_r() -> None:
    r = rng(24)
    for _ in range(3):
        pt = random_twist_point(r)
        assert pairing.g2_mul(pt, R) is not None
        assert not pairing.g2_in_subgroup(pt)
        cleared = pairing.g2_mul(pt, COFACTOR)
        assert cleared is not None and pairing.g2_in_subgroup(cleared)


# --------------------------------------------------------------------------------------------------------
# Pairing


@pytest.mark.parametrize("seed", range(2))
def test_pairing_matches_py_ecc(seed: int) -> None:
    r = rng(30 + seed)
    p1, _ = random_g1(r)
    q2, _ = random_g2(r)
    assert to_oracle_fp12(pairing.pairing(p1, q2)) == oracle.pairing(oracle_g2(q2), oracle_g1(p1))


def test_pairing_of_generators_matches_py_ecc() -> None:
    ours = pairing.pairing(bn254.G1_GENERATOR, G2_GENERATOR)
    assert to_oracle_fp12(ours) == oracle.pairing(oracle.G2, oracle.G1)
    assert ours != FP12_ONE  # non-degenerate
    assert pairing.fp12_pow(ours, R) == FP12_ONE


def test_bilinearity() -> None:
    r = rng(40)
    a, b = r.randrange(1, R), r.randrange(1, R)
    base = pairing.pairing(bn254.G1_GENERATOR, G2_GENERATOR)
    pa = bn254.g1_mul_base(a)
    qb = pairing.g2_mul(G2_GENERATOR, b)
    assert pairing.pairing(pa, qb) == pairing.fp12_pow(base, a * b % R)
    assert pairing.pairing(pa, G2_GENERATOR) == pairing.pairing(
        bn254.G1_GENERATOR, pairing.g2_mul(G2_GENERATOR, a)
    )


def test_identity_pairs_contribute_one() -> None:
    assert pairing.pairing(None, G2_GENERATOR) == FP12_ONE
    assert pairing.pairing(bn254.G1_GENERATOR, None) == FP12_ONE
    assert pairing.pairing_product_is_one([])


def test_multi_pairing_shares_one_loop() -> None:
    r = rng(50)
    p1, a = random_g1(r)
    q2, _ = random_g2(r)
    qa = pairing.g2_mul(q2, a)
    g = bn254.G1_GENERATOR
    # e(aG, Q) * e(-G, aQ) == 1, and the product of Miller loops equals the Miller loop of the pairs.
    pairs = [(p1, q2), (bn254.g1_neg(g), qa)]
    assert pairing.pairing_product_is_one(pairs)
    assert not pairing.pairing_product_is_one([(p1, q2), (g, qa)])
    separate = pairing.fp12_mul(pairing.miller_loop(pairs[:1]), pairing.miller_loop(pairs[1:]))
    assert pairing.final_exponentiation(separate) == pairing.final_exponentiation(pairing.miller_loop(pairs))
    # A precomputed Miller value passed as `extra` counts as one more pair.
    assert pairing.pairing_product_is_one(pairs[:1], extra=pairing.miller_loop(pairs[1:]))


def test_prepared_points_give_the_same_loop() -> None:
    q2, _ = random_g2(rng(60))
    prepared = pairing.prepare_g2(q2)
    assert pairing.prepare_g2(q2) is prepared  # cached
    assert pairing.miller_loop([(bn254.G1_GENERATOR, prepared)]) == pairing.miller_loop(
        [(bn254.G1_GENERATOR, q2)]
    )
