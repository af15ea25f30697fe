"""The optimal ate pairing on BN254 (alt_bn128) on plain Python ints.

This is the fast path for Groth16 verification (:mod:`.groth16`); py_ecc stays the reference and the tests
check this module against it. Like :mod:`.bn254`, elements are bare ints and tuples of ints, never objects.

Tower and twist (the same as py_ecc's, so that results compare equal after a change of basis): the
extension fields ``Fp2``, ``Fp6`` and ``Fp12`` and their Frobenius maps are in :mod:`.bn254_fields`, which
documents the tower and the flat layout of an Fp12 element. G2 lives on the D-type sextic twist
``y^2 = x^3 + 3/xi`` over Fp2 (``xi = 9 + u``). Affine G2 points are ``((x0, x1), (y0, y1))``; ``None`` is
the identity. Jacobian points are flat 6-tuples ``(X0, X1, Y0, Y1, Z0, Z1)`` with ``Z == 0`` the identity.

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
from p2pnode.crypto.bn254_fields import (
    FP12_ONE,
    FROBENIUS_GAMMA1,
    Fp2,
    Fp12,
    f2inv,
    f2mul,
    fp12_conjugate,
    fp12_frobenius,
    fp12_inv,
    fp12_mul,
    fp12_pow,
    fp12_sqr,
)
from p2pnode.crypto.bn254_fields import W_POWER as _W_POWER  # noqa: F401  (tests read pairing._W_POWER)

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

# Twist constant b' = 3/xi. psi on the twist multiplies conj(x) by xi^((p-1)/3) = gamma[1][2] and conj(y)
# by xi^((p-1)/2) = gamma[1][3] (the Frobenius constants of :mod:`.bn254_fields`).
_TWIST_B: Fp2 = f2mul(3, 0, *f2inv(9, 1))
_PSI_X = FROBENIUS_GAMMA1[2]
_PSI_Y = FROBENIUS_GAMMA1[3]


# --------------------------------------------------------------------------------------------------------
# Sparse and cyclotomic Fp12 products, final exponentiation


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
    xx = f2mul(x0, x1, x0, x1)
    xxx = f2mul(xx[0], xx[1], x0, x1)
    yy = f2mul(y0, y1, y0, y1)
    return (yy[0] - xxx[0] - _TWIST_B[0]) % p == 0 and (yy[1] - xxx[1] - _TWIST_B[1]) % p == 0


_G2_INF: _G2Jac = (1, 0, 1, 0, 0, 0)


def _g2_jdouble(pt: _G2Jac) -> _G2Jac:
    x0, x1, y0, y1, z0, z1 = pt
    if (z0 == 0 and z1 == 0) or (y0 == 0 and y1 == 0):
        return _G2_INF
    a0, a1 = f2mul(x0, x1, x0, x1)
    b0, b1 = f2mul(y0, y1, y0, y1)
    c0, c1 = f2mul(b0, b1, b0, b1)
    s0, s1 = f2mul(x0 + b0, x1 + b1, x0 + b0, x1 + b1)
    d0, d1 = 2 * (s0 - a0 - c0), 2 * (s1 - a1 - c1)
    e0, e1 = 3 * a0, 3 * a1
    f0, f1 = f2mul(e0, e1, e0, e1)
    x30, x31 = (f0 - 2 * d0) % _P, (f1 - 2 * d1) % _P
    m0, m1 = f2mul(e0, e1, d0 - x30, d1 - x31)
    z30, z31 = f2mul(2 * y0, 2 * y1, z0, z1)
    return (x30, x31, (m0 - 8 * c0) % _P, (m1 - 8 * c1) % _P, z30, z31)


def _g2_jadd(pt: _G2Jac, qt: _G2Jac) -> _G2Jac:
    x1a, x1b, y1a, y1b, z1a, z1b = pt
    x2a, x2b, y2a, y2b, z2a, z2b = qt
    if z1a == 0 and z1b == 0:
        return qt
    if z2a == 0 and z2b == 0:
        return pt
    p = _P
    z1z1 = f2mul(z1a, z1b, z1a, z1b)
    z2z2 = f2mul(z2a, z2b, z2a, z2b)
    u1 = f2mul(x1a, x1b, *z2z2)
    u2 = f2mul(x2a, x2b, *z1z1)
    s1 = f2mul(y1a, y1b, *f2mul(z2a, z2b, *z2z2))
    s2 = f2mul(y2a, y2b, *f2mul(z1a, z1b, *z1z1))
    h = ((u2[0] - u1[0]) % p, (u2[1] - u1[1]) % p)
    rr = ((s2[0] - s1[0]) % p, (s2[1] - s1[1]) % p)
    if h == (0, 0):
        return _g2_jdouble(pt) if rr == (0, 0) else _G2_INF
    hh = f2mul(*h, *h)
    hhh = f2mul(*h, *hh)
    v = f2mul(*u1, *hh)
    r2 = f2mul(*rr, *rr)
    x3 = ((r2[0] - hhh[0] - 2 * v[0]) % p, (r2[1] - hhh[1] - 2 * v[1]) % p)
    m = f2mul(*rr, v[0] - x3[0], v[1] - x3[1])
    n = f2mul(*s1, *hhh)
    z3 = f2mul(*f2mul(z1a, z1b, z2a, z2b), *h)
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
    x = f2mul(x0, -x1, *_PSI_X)
    y = f2mul(y0, -y1, *_PSI_Y)
    return (x[0], x[1], y[0], y[1], z0, -z1 % p)


def _g2_jeq(a: _G2Jac, b: _G2Jac) -> bool:
    a_inf = a[4] == 0 and a[5] == 0
    b_inf = b[4] == 0 and b[5] == 0
    if a_inf or b_inf:
        return a_inf and b_inf
    az2 = f2mul(a[4], a[5], a[4], a[5])
    bz2 = f2mul(b[4], b[5], b[4], b[5])
    if f2mul(a[0], a[1], *bz2) != f2mul(b[0], b[1], *az2):
        return False
    az3 = f2mul(*az2, a[4], a[5])
    bz3 = f2mul(*bz2, b[4], b[5])
    return f2mul(a[2], a[3], *bz3) == f2mul(b[2], b[3], *az3)


def _g2_to_jac(q: G2Point | None) -> _G2Jac:
    if q is None:
        return _G2_INF
    return (q[0][0], q[0][1], q[1][0], q[1][1], 1, 0)


def _g2_to_affine(pt: _G2Jac) -> G2Point | None:
    x0, x1, y0, y1, z0, z1 = pt
    if z0 == 0 and z1 == 0:
        return None
    zi = f2inv(z0, z1)
    zi2 = f2mul(*zi, *zi)
    zi3 = f2mul(*zi2, *zi)
    return (f2mul(x0, x1, *zi2), f2mul(y0, y1, *zi3))


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
    return (f2mul(x0, -x1 % _P, *_PSI_X), f2mul(y0, -y1 % _P, *_PSI_Y))


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
        i0, i1 = f2inv(d0, d1)
        l0, l1 = f2mul((ay0 - ty0) % p, (ay1 - ty1) % p, i0, i1)
        out.append((l0, l1, (l0 * tx0 - l1 * tx1 - ty0) % p, (l0 * tx1 + l1 * tx0 - ty1) % p))
        s0, s1 = f2mul(l0, l1, l0, l1)
        x0, x1 = (s0 - tx0 - ax0) % p, (s1 - tx1 - ax1) % p
        m0, m1 = f2mul(l0, l1, tx0 - x0, tx1 - x1)
        tx0, tx1, ty0, ty1 = x0, x1, (m0 - ty0) % p, (m1 - ty1) % p

    for digit in _LOOP_NAF[1:]:
        # Doubling: lambda = 3 xT^2 / (2 yT).
        if ty0 == 0 and ty1 == 0:
            raise ValueError("degenerate Miller loop step (point not in G2)")
        i0, i1 = f2inv(2 * ty0 % p, 2 * ty1 % p)
        s0, s1 = f2mul(tx0, tx1, tx0, tx1)
        l0, l1 = f2mul(3 * s0, 3 * s1, i0, i1)
        out.append((l0, l1, (l0 * tx0 - l1 * tx1 - ty0) % p, (l0 * tx1 + l1 * tx0 - ty1) % p))
        s0, s1 = f2mul(l0, l1, l0, l1)
        x0, x1 = (s0 - 2 * tx0) % p, (s1 - 2 * tx1) % p
        m0, m1 = f2mul(l0, l1, tx0 - x0, tx1 - x1)
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
