"""The optimal ate pairing on BN254 (alt_bn128) on plain Python ints.

This is the fast path for Groth16 verification (:mod:`.groth16`); py_ecc stays the reference and the tests
check this module against it. Like :mod:`.bn254`, elements are bare ints and tuples of ints, never objects.

Tower and twist (the same as py_ecc's, so that results compare equal after a change of basis):

* ``Fp2 = Fp[u]/(u^2 + 1)``, an element ``(a0, a1)`` is ``a0 + a1*u``;
* ``Fp6 = Fp2[v]/(v^3 - xi)`` with ``xi = 9 + u``;
* ``Fp12 = Fp6[w]/(w^2 - v)``, so ``w^6 = xi``. An Fp12 element is a flat tuple of 12 ints
  ``(g0, g1, g2, h0, h1, h2)`` of Fp2 pairs, meaning ``(g0 + g1*v + g2*v^2) + (h0 + h1*v + h2*v^2)*w``;
* G2 lives on the D-type sextic twist ``y^2 = x^3 + 3/xi`` over Fp2. Affine G2 points are
  ``((x0, x1), (y0, y1))``; ``None`` is the identity. Jacobian points are flat 6-tuples
  ``(X0, X1, Y0, Y1, Z0, Z1)`` with ``Z == 0`` the identity.

The pairing is ``e(P, Q) = f_{6x+2,Q}(P) * l_{T,psi(Q)}(P) * l_{T',-psi^2(Q)}(P)`` raised to
``(p^12 - 1)/r``, with the BN parameter ``x = 4965661367192848881``. How the time is spent:

* Miller loop in affine G2 coordinates: one Fp2 inversion per step (``pow(n, -1, p)`` on a 254-bit int
  costs about as much as three Fp2 multiplications, much less than the extra work of projective
  formulas in Python). Every line is scaled by ``1/yP``, a factor in Fp that the final exponentiation
  removes, so a line is ``1 + B*w + C*w*v`` and multiplying it into the accumulator is a sparse product;
* the line coefficients of a G2 point depend only on that point: :func:`prepare_g2` computes them once
  and caches them, so the verifying key's fixed points cost one sparse product per step and no curve
  arithmetic;
* :func:`miller_loop` runs ONE loop for any number of pairs: the accumulator is squared once per step
  whatever the number of pairs, and one final exponentiation serves the whole product;
* the final exponentiation is the easy part ``(p^6 - 1)(p^2 + 1)`` then the hard part
  ``(p^4 - p^2 + 1)/r`` by the exact addition chain of Scott et al. (Pairing 2009, three
  exponentiations by ``x``), with Granger-Scott cyclotomic squaring. The exponent is exactly
  ``(p^12 - 1)/r``, so the result equals py_ecc's, not a power of it;
* sums of products are reduced modulo p once per coefficient (lazy reduction).

Subgroup membership in G2 (:func:`g2_in_subgroup`) uses the endomorphism test of El Housni, Guillevic and
Piellard (ePrint 2022/348): ``[x+1]Q + psi([x]Q) + psi^2([x]Q) == psi^3([2x]Q)``, one 63-bit scalar
multiplication instead of a 254-bit one. The tests show that it rejects a point of every prime order
dividing the twist's cofactor, which makes it exact (each such prime divides the group order once).

All arithmetic is variable-time; it only ever handles public data (proofs and verifying keys).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from p2pnode.crypto.bn254 import CURVE_ORDER, FIELD_MODULUS, G1Point

__all__ = [
    "BN_X",
    "FP12_ONE",
    "G2_GENERATOR",
    "Fp12",
    "G2Point",
    "G2Prepared",
    "final_exponentiation",
    "fp12_conjugate",
    "fp12_frobenius",
    "fp12_inv",
    "fp12_mul",
    "fp12_pow",
    "fp12_sqr",
    "g2_add",
    "g2_in_subgroup",
    "g2_is_on_curve",
    "g2_mul",
    "g2_neg",
    "g2_psi",
    "miller_loop",
    "pairing",
    "pairing_product_is_one",
    "prepare_g2",
]

_P = FIELD_MODULUS
_R = CURVE_ORDER

BN_X = 4965661367192848881
_ATE_LOOP = 6 * BN_X + 2

Fp2 = tuple[int, int]
Fp12 = tuple[int, int, int, int, int, int, int, int, int, int, int, int]
G2Point = tuple[Fp2, Fp2]
_G2Jac = tuple[int, int, int, int, int, int]

G2_GENERATOR: G2Point = (
    (
        10857046999023057135944570762232829481370756359578518086990519993285655852781,
        11559732032986387107991004021392285783925812861821192530917403151452391805634,
    ),
    (
        8495653923123431417604973247489272438418190587263600148770280649306958101930,
        4082367875863433681332203403145435568316851327593401208105741076214120093531,
    ),
)

FP12_ONE: Fp12 = (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


# --------------------------------------------------------------------------------------------------------
# Fp2


def _f2mul(a0: int, a1: int, b0: int, b1: int) -> Fp2:
    p = _P
    return ((a0 * b0 - a1 * b1) % p, (a0 * b1 + a1 * b0) % p)


def _f2inv(a0: int, a1: int) -> Fp2:
    p = _P
    n = pow((a0 * a0 + a1 * a1) % p, -1, p)
    return (a0 * n % p, -a1 * n % p)


def _f2pow(a: Fp2, e: int) -> Fp2:
    out = (1, 0)
    for bit in bin(e)[2:]:
        out = _f2mul(out[0], out[1], out[0], out[1])
        if bit == "1":
            out = _f2mul(out[0], out[1], a[0], a[1])
    return out


# Twist constant b' = 3/xi and the Frobenius constants gamma[n][k] = xi^(k*(p^n - 1)/6) for the w^k
# coefficient of an Fp12 element. psi on the twist multiplies conj(x) by xi^((p-1)/3) = gamma[1][2] and
# conj(y) by xi^((p-1)/2) = gamma[1][3].
_TWIST_B: Fp2 = _f2mul(3, 0, *_f2inv(9, 1))
_G1K = [_f2pow((9, 1), k * (_P - 1) // 6) for k in range(6)]
_G2K = [_f2mul(g[0], g[1], g[0], -g[1] % _P) for g in _G1K]  # gamma1 * gamma1^p
_PSI_X = _G1K[2]
_PSI_Y = _G1K[3]
# Positions of the w^k coefficient in the flat layout (g0, g1, g2, h0, h1, h2): g_j is w^(2j), h_j w^(2j+1).
_W_POWER = (0, 2, 4, 1, 3, 5)


# --------------------------------------------------------------------------------------------------------
# Fp6 (six ints; products reduced once per coefficient)


def _f6mul(
    a0: int, a1: int, a2: int, a3: int, a4: int, a5: int, b0: int, b1: int, b2: int, b3: int, b4: int, b5: int
) -> tuple[int, int, int, int, int, int]:
    # (A0 + A1 v + A2 v^2)(B0 + B1 v + B2 v^2) with Ai = (a_{2i}, a_{2i+1}).
    p = _P
    s0 = a2 * b4 - a3 * b5 + a4 * b2 - a5 * b3  # A1B2 + A2B1, real part
    s1 = a2 * b5 + a3 * b4 + a4 * b3 + a5 * b2
    t0 = a4 * b4 - a5 * b5  # A2B2
    t1 = a4 * b5 + a5 * b4
    return (
        (a0 * b0 - a1 * b1 + 9 * s0 - s1) % p,
        (a0 * b1 + a1 * b0 + s0 + 9 * s1) % p,
        (a0 * b2 - a1 * b3 + a2 * b0 - a3 * b1 + 9 * t0 - t1) % p,
        (a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + t0 + 9 * t1) % p,
        (a0 * b4 - a1 * b5 + a2 * b2 - a3 * b3 + a4 * b0 - a5 * b1) % p,
        (a0 * b5 + a1 * b4 + a2 * b3 + a3 * b2 + a4 * b1 + a5 * b0) % p,
    )


def _f6inv(a0: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> tuple[int, int, int, int, int, int]:
    p = _P
    # t0 = A0^2 - xi A1 A2, t1 = xi A2^2 - A0 A1, t2 = A1^2 - A0 A2
    u0, u1 = _f2mul(a2, a3, a4, a5)
    t0 = ((a0 * a0 - a1 * a1 - 9 * u0 + u1) % p, (2 * a0 * a1 - u0 - 9 * u1) % p)
    u0, u1 = _f2mul(a4, a5, a4, a5)
    v0, v1 = _f2mul(a0, a1, a2, a3)
    t1 = ((9 * u0 - u1 - v0) % p, (u0 + 9 * u1 - v1) % p)
    v0, v1 = _f2mul(a0, a1, a4, a5)
    t2 = ((a2 * a2 - a3 * a3 - v0) % p, (2 * a2 * a3 - v1) % p)
    # norm = A0 t0 + xi (A2 t1 + A1 t2)
    s0 = a4 * t1[0] - a5 * t1[1] + a2 * t2[0] - a3 * t2[1]
    s1 = a4 * t1[1] + a5 * t1[0] + a2 * t2[1] + a3 * t2[0]
    n0 = (a0 * t0[0] - a1 * t0[1] + 9 * s0 - s1) % p
    n1 = (a0 * t0[1] + a1 * t0[0] + s0 + 9 * s1) % p
    i0, i1 = _f2inv(n0, n1)
    return (*_f2mul(t0[0], t0[1], i0, i1), *_f2mul(t1[0], t1[1], i0, i1), *_f2mul(t2[0], t2[1], i0, i1))


# --------------------------------------------------------------------------------------------------------
# Fp12


def fp12_mul(a: Fp12, b: Fp12) -> Fp12:
    """``a * b`` (Karatsuba over Fp6: three Fp6 products)."""
    p = _P
    g0, g1, g2, g3, g4, g5, h0, h1, h2, h3, h4, h5 = a
    k0, k1, k2, k3, k4, k5, m0, m1, m2, m3, m4, m5 = b
    t0, t1, t2, t3, t4, t5 = _f6mul(g0, g1, g2, g3, g4, g5, k0, k1, k2, k3, k4, k5)
    s0, s1, s2, s3, s4, s5 = _f6mul(h0, h1, h2, h3, h4, h5, m0, m1, m2, m3, m4, m5)
    u0, u1, u2, u3, u4, u5 = _f6mul(
        g0 + h0, g1 + h1, g2 + h2, g3 + h3, g4 + h4, g5 + h5,
        k0 + m0, k1 + m1, k2 + m2, k3 + m3, k4 + m4, k5 + m5,
    )  # fmt: skip
    # c0 = t + s*v, where s*v = (xi*S2, S0, S1); c1 = u - t - s
    return (
        (t0 + 9 * s4 - s5) % p,
        (t1 + s4 + 9 * s5) % p,
        (t2 + s0) % p,
        (t3 + s1) % p,
        (t4 + s2) % p,
        (t5 + s3) % p,
        (u0 - t0 - s0) % p,
        (u1 - t1 - s1) % p,
        (u2 - t2 - s2) % p,
        (u3 - t3 - s3) % p,
        (u4 - t4 - s4) % p,
        (u5 - t5 - s5) % p,
    )


def fp12_sqr(a: Fp12) -> Fp12:
    """``a^2`` by the complex method: ``(g + h w)^2 = (g+h)(g+hv) - gh - ghv + 2gh w``."""
    p = _P
    g0, g1, g2, g3, g4, g5, h0, h1, h2, h3, h4, h5 = a
    t0, t1, t2, t3, t4, t5 = _f6mul(g0, g1, g2, g3, g4, g5, h0, h1, h2, h3, h4, h5)
    # h*v = (xi*H2, H0, H1)
    s0, s1, s2, s3, s4, s5 = _f6mul(
        g0 + h0, g1 + h1, g2 + h2, g3 + h3, g4 + h4, g5 + h5,
        g0 + 9 * h4 - h5, g1 + h4 + 9 * h5, g2 + h0, g3 + h1, g4 + h2, g5 + h3,
    )  # fmt: skip
    return (
        (s0 - t0 - 9 * t4 + t5) % p,
        (s1 - t1 - t4 - 9 * t5) % p,
        (s2 - t2 - t0) % p,
        (s3 - t3 - t1) % p,
        (s4 - t4 - t2) % p,
        (s5 - t5 - t3) % p,
        2 * t0 % p,
        2 * t1 % p,
        2 * t2 % p,
        2 * t3 % p,
        2 * t4 % p,
        2 * t5 % p,
    )


def _mul_by_line(f: Fp12, b0: int, b1: int, c0: int, c1: int) -> Fp12:
    """``f * (1 + L w)`` with ``L = B + C v``: ``g + (hL)v + (gL + h) w``."""
    p = _P
    g0, g1, g2, g3, g4, g5, h0, h1, h2, h3, h4, h5 = f
    # gL = (G0 B + xi G2 C, G0 C + G1 B, G1 C + G2 B)
    x0 = g4 * c0 - g5 * c1
    x1 = g4 * c1 + g5 * c0
    y0 = h4 * c0 - h5 * c1
    y1 = h4 * c1 + h5 * c0
    # hL*v = (xi*(H1 C + H2 B), H0 B + xi H2 C, H0 C + H1 B)
    z0 = h2 * c0 - h3 * c1 + h4 * b0 - h5 * b1
    z1 = h2 * c1 + h3 * c0 + h4 * b1 + h5 * b0
    return (
        (g0 + 9 * z0 - z1) % p,
        (g1 + z0 + 9 * z1) % p,
        (g2 + h0 * b0 - h1 * b1 + 9 * y0 - y1) % p,
        (g3 + h0 * b1 + h1 * b0 + y0 + 9 * y1) % p,
        (g4 + h0 * c0 - h1 * c1 + h2 * b0 - h3 * b1) % p,
        (g5 + h0 * c1 + h1 * c0 + h2 * b1 + h3 * b0) % p,
        (h0 + g0 * b0 - g1 * b1 + 9 * x0 - x1) % p,
        (h1 + g0 * b1 + g1 * b0 + x0 + 9 * x1) % p,
        (h2 + g0 * c0 - g1 * c1 + g2 * b0 - g3 * b1) % p,
        (h3 + g0 * c1 + g1 * c0 + g2 * b1 + g3 * b0) % p,
        (h4 + g2 * c0 - g3 * c1 + g4 * b0 - g5 * b1) % p,
        (h5 + g2 * c1 + g3 * c0 + g4 * b1 + g5 * b0) % p,
    )


def fp12_conjugate(a: Fp12) -> Fp12:
    """``a^(p^6)``; the inverse of ``a`` when ``a`` is in the cyclotomic subgroup."""
    p = _P
    return (*a[:6], *((-c) % p for c in a[6:]))  # type: ignore[return-value]


def fp12_inv(a: Fp12) -> Fp12:
    """``1/a`` for ``a != 0``: ``(g - h w) / (g^2 - h^2 v)``."""
    p = _P
    g = a[:6]
    h = a[6:]
    gg = _f6mul(*g, *g)
    hh = _f6mul(*h, *h)
    # g^2 - h^2 v, with h^2 v = (xi*HH2, HH0, HH1)
    d = (
        (gg[0] - 9 * hh[4] + hh[5]) % p,
        (gg[1] - hh[4] - 9 * hh[5]) % p,
        (gg[2] - hh[0]) % p,
        (gg[3] - hh[1]) % p,
        (gg[4] - hh[2]) % p,
        (gg[5] - hh[3]) % p,
    )
    di = _f6inv(*d)
    return (*_f6mul(*g, *di), *((-c) % p for c in _f6mul(*h, *di)))  # type: ignore[return-value]


def _frobenius_with(a: Fp12, gammas: Sequence[Fp2], conj: bool) -> Fp12:
    p = _P
    out: list[int] = []
    for pos in range(6):
        c0, c1 = a[2 * pos], a[2 * pos + 1]
        if conj:
            c1 = -c1
        g0, g1 = gammas[_W_POWER[pos]]
        out += ((c0 * g0 - c1 * g1) % p, (c0 * g1 + c1 * g0) % p)
    return tuple(out)  # type: ignore[return-value]


def fp12_frobenius(a: Fp12, power: int = 1) -> Fp12:
    """``a^(p^power)`` for ``power`` in {1, 2, 3}."""
    if power == 1:
        return _frobenius_with(a, _G1K, True)
    if power == 2:
        return _frobenius_with(a, _G2K, False)
    if power == 3:
        return _frobenius_with(_frobenius_with(a, _G2K, False), _G1K, True)
    raise ValueError("Frobenius power must be 1, 2 or 3")


def fp12_pow(a: Fp12, e: int) -> Fp12:
    """``a^e`` for ``e >= 0`` by plain square-and-multiply (tests and one-off constants)."""
    out = FP12_ONE
    for bit in bin(e)[2:]:
        out = fp12_sqr(out)
        if bit == "1":
            out = fp12_mul(out, a)
    return out


def _cyclotomic_sqr(a: Fp12) -> Fp12:
    # Granger-Scott squaring (ePrint 2009/565, section 3.2), valid only in the cyclotomic subgroup, that is
    # after the easy part of the final exponentiation. With the Fp2 coefficients G0..G2, H0..H2:
    #   G0' = 3(xi H1^2 + G0^2) - 2 G0    H0' = 3 xi (2 H2 G1) + 2 H0
    #   G1' = 3(xi G2^2 + H0^2) - 2 G1    H1' = 3 (2 G0 H1) + 2 H1
    #   G2' = 3(xi H2^2 + G1^2) - 2 G2    H2' = 3 (2 G2 H0) + 2 H2
    p = _P
    g0, g1, g2, g3, g4, g5, h0, h1, h2, h3, h4, h5 = a
    # t0 = H1^2 xi + G0^2, t6 = 2 G0 H1
    s0 = (h2 + h3) * (h2 - h3)
    s1 = 2 * h2 * h3
    t00 = (g0 + g1) * (g0 - g1) + 9 * s0 - s1
    t01 = 2 * g0 * g1 + s0 + 9 * s1
    t60 = 2 * (g0 * h2 - g1 * h3)
    t61 = 2 * (g0 * h3 + g1 * h2)
    # t2 = G2^2 xi + H0^2, t7 = 2 G2 H0
    s0 = (g4 + g5) * (g4 - g5)
    s1 = 2 * g4 * g5
    t20 = (h0 + h1) * (h0 - h1) + 9 * s0 - s1
    t21 = 2 * h0 * h1 + s0 + 9 * s1
    t70 = 2 * (g4 * h0 - g5 * h1)
    t71 = 2 * (g4 * h1 + g5 * h0)
    # t4 = H2^2 xi + G1^2, t8 = 2 H2 G1 xi
    s0 = (h4 + h5) * (h4 - h5)
    s1 = 2 * h4 * h5
    t40 = (g2 + g3) * (g2 - g3) + 9 * s0 - s1
    t41 = 2 * g2 * g3 + s0 + 9 * s1
    m0 = 2 * (h4 * g2 - h5 * g3)
    m1 = 2 * (h4 * g3 + h5 * g2)
    t80 = 9 * m0 - m1
    t81 = m0 + 9 * m1
    return (
        (3 * t00 - 2 * g0) % p,
        (3 * t01 - 2 * g1) % p,
        (3 * t20 - 2 * g2) % p,
        (3 * t21 - 2 * g3) % p,
        (3 * t40 - 2 * g4) % p,
        (3 * t41 - 2 * g5) % p,
        (3 * t80 + 2 * h0) % p,
        (3 * t81 + 2 * h1) % p,
        (3 * t60 + 2 * h2) % p,
        (3 * t61 + 2 * h3) % p,
        (3 * t70 + 2 * h4) % p,
        (3 * t71 + 2 * h5) % p,
    )


def _naf(k: int) -> list[int]:
    """Non-adjacent form of ``k > 0``, most significant digit first."""
    digits: list[int] = []
    while k:
        if k & 1:
            d = 2 - (k & 3)
            k -= d
        else:
            d = 0
        digits.append(d)
        k >>= 1
    return digits[::-1]


_X_NAF = _naf(BN_X)


def _cyclotomic_exp_x(a: Fp12) -> Fp12:
    """``a^x`` for ``a`` in the cyclotomic subgroup (where the inverse is the conjugate)."""
    a_inv = fp12_conjugate(a)
    out = a
    for d in _X_NAF[1:]:
        out = _cyclotomic_sqr(out)
        if d == 1:
            out = fp12_mul(out, a)
        elif d == -1:
            out = fp12_mul(out, a_inv)
    return out


def final_exponentiation(f: Fp12) -> Fp12:
    """``f^((p^12 - 1)/r)``, exactly (not a multiple of the exponent). ``f`` must be non-zero."""
    # Easy part: f^((p^6 - 1)(p^2 + 1)); the result is in the cyclotomic subgroup.
    t1 = fp12_mul(fp12_conjugate(f), fp12_inv(f))
    t1 = fp12_mul(fp12_frobenius(t1, 2), t1)
    # Hard part (p^4 - p^2 + 1)/r = l0 + l1 p + l2 p^2 + l3 p^3 with l3 = 1, l2 = 6x^2 + 1,
    # l1 = -36x^3 - 18x^2 - 12x + 1, l0 = -36x^3 - 30x^2 - 18x - 2, evaluated as in Scott et al.
    fp = fp12_frobenius(t1, 1)
    fp2 = fp12_frobenius(t1, 2)
    fp3 = fp12_frobenius(fp2, 1)
    fu = _cyclotomic_exp_x(t1)
    fu2 = _cyclotomic_exp_x(fu)
    fu3 = _cyclotomic_exp_x(fu2)
    y3 = fp12_conjugate(fp12_frobenius(fu, 1))
    fu2p = fp12_frobenius(fu2, 1)
    fu3p = fp12_frobenius(fu3, 1)
    y2 = fp12_frobenius(fu2, 2)
    y0 = fp12_mul(fp12_mul(fp, fp2), fp3)
    y1 = fp12_conjugate(t1)
    y5 = fp12_conjugate(fu2)
    y4 = fp12_conjugate(fp12_mul(fu, fu2p))
    y6 = fp12_conjugate(fp12_mul(fu3, fu3p))
    t0 = fp12_mul(fp12_mul(_cyclotomic_sqr(y6), y4), y5)
    t1 = fp12_mul(fp12_mul(y3, y5), t0)
    t0 = fp12_mul(t0, y2)
    t1 = _cyclotomic_sqr(fp12_mul(_cyclotomic_sqr(t1), t0))
    t0 = fp12_mul(t1, y1)
    t1 = fp12_mul(t1, y0)
    return fp12_mul(_cyclotomic_sqr(t0), t1)


# --------------------------------------------------------------------------------------------------------
# G2


def g2_is_on_curve(q: G2Point) -> bool:
    """True iff both coordinates of ``q`` are in ``[0, p)`` and ``q`` satisfies the twist's equation.

    This does not check the subgroup: the twist has order ``r * c`` with a large cofactor ``c``.
    """
    p = _P
    (x0, x1), (y0, y1) = q
    if not (0 <= x0 < p and 0 <= x1 < p and 0 <= y0 < p and 0 <= y1 < p):
        return False
    xx = _f2mul(x0, x1, x0, x1)
    xxx = _f2mul(xx[0], xx[1], x0, x1)
    yy = _f2mul(y0, y1, y0, y1)
    return (yy[0] - xxx[0] - _TWIST_B[0]) % p == 0 and (yy[1] - xxx[1] - _TWIST_B[1]) % p == 0


_G2_INF: _G2Jac = (1, 0, 1, 0, 0, 0)


def _g2_jdouble(pt: _G2Jac) -> _G2Jac:
    x0, x1, y0, y1, z0, z1 = pt
    if (z0 == 0 and z1 == 0) or (y0 == 0 and y1 == 0):
        return _G2_INF
    a0, a1 = _f2mul(x0, x1, x0, x1)
    b0, b1 = _f2mul(y0, y1, y0, y1)
    c0, c1 = _f2mul(b0, b1, b0, b1)
    s0, s1 = _f2mul(x0 + b0, x1 + b1, x0 + b0, x1 + b1)
    d0, d1 = 2 * (s0 - a0 - c0), 2 * (s1 - a1 - c1)
    e0, e1 = 3 * a0, 3 * a1
    f0, f1 = _f2mul(e0, e1, e0, e1)
    x30, x31 = (f0 - 2 * d0) % _P, (f1 - 2 * d1) % _P
    m0, m1 = _f2mul(e0, e1, d0 - x30, d1 - x31)
    z30, z31 = _f2mul(2 * y0, 2 * y1, z0, z1)
    return (x30, x31, (m0 - 8 * c0) % _P, (m1 - 8 * c1) % _P, z30, z31)


def _g2_jadd(pt: _G2Jac, qt: _G2Jac) -> _G2Jac:
    x1a, x1b, y1a, y1b, z1a, z1b = pt
    x2a, x2b, y2a, y2b, z2a, z2b = qt
    if z1a == 0 and z1b == 0:
        return qt
    if z2a == 0 and z2b == 0:
        return pt
    p = _P
    z1z1 = _f2mul(z1a, z1b, z1a, z1b)
    z2z2 = _f2mul(z2a, z2b, z2a, z2b)
    u1 = _f2mul(x1a, x1b, *z2z2)
    u2 = _f2mul(x2a, x2b, *z1z1)
    s1 = _f2mul(y1a, y1b, *_f2mul(z2a, z2b, *z2z2))
    s2 = _f2mul(y2a, y2b, *_f2mul(z1a, z1b, *z1z1))
    h = ((u2[0] - u1[0]) % p, (u2[1] - u1[1]) % p)
    rr = ((s2[0] - s1[0]) % p, (s2[1] - s1[1]) % p)
    if h == (0, 0):
        return _g2_jdouble(pt) if rr == (0, 0) else _G2_INF
    hh = _f2mul(*h, *h)
    hhh = _f2mul(*h, *hh)
    v = _f2mul(*u1, *hh)
    r2 = _f2mul(*rr, *rr)
    x3 = ((r2[0] - hhh[0] - 2 * v[0]) % p, (r2[1] - hhh[1] - 2 * v[1]) % p)
    m = _f2mul(*rr, v[0] - x3[0], v[1] - x3[1])
    n = _f2mul(*s1, *hhh)
    z3 = _f2mul(*_f2mul(z1a, z1b, z2a, z2b), *h)
    return (x3[0], x3[1], (m[0] - n[0]) % p, (m[1] - n[1]) % p, z3[0], z3[1])


def _g2_jmul(pt: _G2Jac, k: int) -> _G2Jac:
    """``k * pt`` for ``k >= 0`` by double-and-add (only used with short or test scalars)."""
    acc = _G2_INF
    for bit in bin(k)[2:]:
        acc = _g2_jdouble(acc)
        if bit == "1":
            acc = _g2_jadd(acc, pt)
    return acc


def _g2_jpsi(pt: _G2Jac) -> _G2Jac:
    p = _P
    x0, x1, y0, y1, z0, z1 = pt
    x = _f2mul(x0, -x1, *_PSI_X)
    y = _f2mul(y0, -y1, *_PSI_Y)
    return (x[0], x[1], y[0], y[1], z0, -z1 % p)


def _g2_jeq(a: _G2Jac, b: _G2Jac) -> bool:
    a_inf = a[4] == 0 and a[5] == 0
    b_inf = b[4] == 0 and b[5] == 0
    if a_inf or b_inf:
        return a_inf and b_inf
    az2 = _f2mul(a[4], a[5], a[4], a[5])
    bz2 = _f2mul(b[4], b[5], b[4], b[5])
    if _f2mul(a[0], a[1], *bz2) != _f2mul(b[0], b[1], *az2):
        return False
    az3 = _f2mul(*az2, a[4], a[5])
    bz3 = _f2mul(*bz2, b[4], b[5])
    return _f2mul(a[2], a[3], *bz3) == _f2mul(b[2], b[3], *az3)


def _g2_to_jac(q: G2Point | None) -> _G2Jac:
    if q is None:
        return _G2_INF
    return (q[0][0], q[0][1], q[1][0], q[1][1], 1, 0)


def _g2_to_affine(pt: _G2Jac) -> G2Point | None:
    x0, x1, y0, y1, z0, z1 = pt
    if z0 == 0 and z1 == 0:
        return None
    zi = _f2inv(z0, z1)
    zi2 = _f2mul(*zi, *zi)
    zi3 = _f2mul(*zi2, *zi)
    return (_f2mul(x0, x1, *zi2), _f2mul(y0, y1, *zi3))


def g2_add(a: G2Point | None, b: G2Point | None) -> G2Point | None:
    """``a + b``; ``None`` is the identity."""
    return _g2_to_affine(_g2_jadd(_g2_to_jac(a), _g2_to_jac(b)))


def g2_neg(q: G2Point) -> G2Point:
    """``-q``."""
    return (q[0], ((-q[1][0]) % _P, (-q[1][1]) % _P))


def g2_mul(q: G2Point | None, k: int) -> G2Point | None:
    """``k * q`` for any integer ``k`` (the scalar is NOT reduced mod r: q may be outside G2)."""
    if q is None or k == 0:
        return None
    if k < 0:
        q, k = g2_neg(q), -k
    return _g2_to_affine(_g2_jmul(_g2_to_jac(q), k))


def g2_psi(q: G2Point) -> G2Point:
    """The untwist-Frobenius-twist endomorphism; on G2 it is multiplication by ``p``."""
    (x0, x1), (y0, y1) = q
    return (_f2mul(x0, -x1 % _P, *_PSI_X), _f2mul(y0, -y1 % _P, *_PSI_Y))


def g2_in_subgroup(q: G2Point) -> bool:
    """True iff the twist point ``q`` (already checked on the curve) has order ``r``.

    ``[x+1]Q + psi([x]Q) + psi^2([x]Q) == psi^3([2x]Q)``; see the module docstring for why this is exact.
    """
    qj = _g2_to_jac(q)
    xq = _g2_jmul(qj, BN_X)
    psi1 = _g2_jpsi(xq)
    psi2 = _g2_jpsi(psi1)
    lhs = _g2_jadd(_g2_jadd(_g2_jadd(xq, qj), psi1), psi2)
    rhs = _g2_jpsi(_g2_jpsi(_g2_jpsi(_g2_jdouble(xq))))
    return _g2_jeq(lhs, rhs)


# --------------------------------------------------------------------------------------------------------
# Miller loop


_LOOP_NAF = _naf(_ATE_LOOP)
# Line coefficients are (lambda0, lambda1, mu0, mu1): the line through T with slope lambda is
# y = lambda*x - mu on the twist, and evaluated at P (scaled by 1/yP) it is
# 1 + (-lambda*xP/yP) w + (mu'/yP) w v with mu' = lambda*xT - yT.
_Line = tuple[int, int, int, int]


class G2Prepared:
    """The Miller-loop line coefficients of one G2 point, in loop order; see :func:`prepare_g2`."""

    __slots__ = ("lines", "point")

    def __init__(self, point: G2Point, lines: tuple[_Line, ...]) -> None:
        self.point = point
        self.lines = lines


def _line_coefficients(q: G2Point) -> tuple[_Line, ...]:
    p = _P
    (qx0, qx1), (qy0, qy1) = q
    nqy0, nqy1 = (-qy0) % p, (-qy1) % p
    tx0, tx1, ty0, ty1 = qx0, qx1, qy0, qy1
    out: list[_Line] = []

    def add_step(ax0: int, ax1: int, ay0: int, ay1: int) -> None:
        nonlocal tx0, tx1, ty0, ty1
        d0, d1 = (ax0 - tx0) % p, (ax1 - tx1) % p
        if d0 == 0 and d1 == 0:
            raise ValueError("degenerate Miller loop step (point not in G2)")
        i0, i1 = _f2inv(d0, d1)
        l0, l1 = _f2mul((ay0 - ty0) % p, (ay1 - ty1) % p, i0, i1)
        out.append((l0, l1, (l0 * tx0 - l1 * tx1 - ty0) % p, (l0 * tx1 + l1 * tx0 - ty1) % p))
        s0, s1 = _f2mul(l0, l1, l0, l1)
        x0, x1 = (s0 - tx0 - ax0) % p, (s1 - tx1 - ax1) % p
        m0, m1 = _f2mul(l0, l1, tx0 - x0, tx1 - x1)
        tx0, tx1, ty0, ty1 = x0, x1, (m0 - ty0) % p, (m1 - ty1) % p

    for digit in _LOOP_NAF[1:]:
        # Doubling: lambda = 3 xT^2 / (2 yT).
        if ty0 == 0 and ty1 == 0:
            raise ValueError("degenerate Miller loop step (point not in G2)")
        i0, i1 = _f2inv(2 * ty0 % p, 2 * ty1 % p)
        s0, s1 = _f2mul(tx0, tx1, tx0, tx1)
        l0, l1 = _f2mul(3 * s0, 3 * s1, i0, i1)
        out.append((l0, l1, (l0 * tx0 - l1 * tx1 - ty0) % p, (l0 * tx1 + l1 * tx0 - ty1) % p))
        s0, s1 = _f2mul(l0, l1, l0, l1)
        x0, x1 = (s0 - 2 * tx0) % p, (s1 - 2 * tx1) % p
        m0, m1 = _f2mul(l0, l1, tx0 - x0, tx1 - x1)
        tx0, tx1, ty0, ty1 = x0, x1, (m0 - ty0) % p, (m1 - ty1) % p
        if digit == 1:
            add_step(qx0, qx1, qy0, qy1)
        elif digit == -1:
            add_step(qx0, qx1, nqy0, nqy1)
    # Corrections: T + psi(Q), then the line through that and -psi^2(Q).
    (a0, a1), (b0, b1) = g2_psi(q)
    add_step(a0, a1, b0, b1)
    (a0, a1), (b0, b1) = g2_psi(((a0, a1), (b0, b1)))
    add_step(a0, a1, (-b0) % p, (-b1) % p)
    return tuple(out)


@functools.lru_cache(maxsize=64)
def prepare_g2(q: G2Point) -> G2Prepared:
    """The line coefficients of ``q`` for :func:`miller_loop`, cached (a verifying key's fixed points).

    ``q`` must be in G2 (the caller checks); raises ``ValueError`` only for points that are not.
    """
    return G2Prepared(q, _line_coefficients(q))


def miller_loop(pairs: Sequence[tuple[G1Point | None, G2Point | G2Prepared | None]]) -> Fp12:
    """The product of the Miller-loop values of all pairs, computed in one shared loop.

    G1 points are affine and on the curve, G2 points are in G2 (affine or prepared); a pair with an
    identity contributes 1. The result still needs :func:`final_exponentiation`.
    """
    p = _P
    evals: list[tuple[int, int, tuple[_Line, ...]]] = []
    for g1, g2 in pairs:
        if g1 is None or g2 is None:
            continue
        lines = g2.lines if isinstance(g2, G2Prepared) else _line_coefficients(g2)
        y_inv = pow(g1[1], -1, p)
        evals.append(((-g1[0] * y_inv) % p, y_inv, lines))
    f = FP12_ONE
    if not evals:
        return f
    idx = 0
    first = True
    for digit in _LOOP_NAF[1:]:
        if not first:
            f = fp12_sqr(f)
        first = False
        for xq, yi, lines in evals:
            l0, l1, m0, m1 = lines[idx]
            f = _mul_by_line(f, l0 * xq % p, l1 * xq % p, m0 * yi % p, m1 * yi % p)
        idx += 1
        if digit:
            for xq, yi, lines in evals:
                l0, l1, m0, m1 = lines[idx]
                f = _mul_by_line(f, l0 * xq % p, l1 * xq % p, m0 * yi % p, m1 * yi % p)
            idx += 1
    for _ in range(2):
        for xq, yi, lines in evals:
            l0, l1, m0, m1 = lines[idx]
            f = _mul_by_line(f, l0 * xq % p, l1 * xq % p, m0 * yi % p, m1 * yi % p)
        idx += 1
    return f


def pairing(p1: G1Point | None, q2: G2Point | None) -> Fp12:
    """The reduced optimal ate pairing ``e(P, Q)`` (equal to py_ecc's ``pairing(Q, P)``)."""
    return final_exponentiation(miller_loop([(p1, q2)]))


def pairing_product_is_one(
    pairs: Sequence[tuple[G1Point | None, G2Point | G2Prepared | None]], extra: Fp12 | None = None
) -> bool:
    """True iff ``prod e(P_i, Q_i) == 1``: one Miller loop and one final exponentiation for all pairs.

    ``extra`` is an optional precomputed Miller-loop value multiplied in before the final
    exponentiation (a verifying key's ``e(alpha, beta)`` loop, say).
    """
    f = miller_loop(pairs)
    if extra is not None:
        f = fp12_mul(f, extra)
    return final_exponentiation(f) == FP12_ONE
