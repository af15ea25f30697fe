"""The BN254 (alt_bn128) extension-field tower used by the pairing, on plain Python ints.

Elements are bare ints and tuples of ints, never objects, as in :mod:`.bn254`. The tower is py_ecc's, so
that results compare equal after a change of basis:

* ``Fp2 = Fp[u]/(u^2 + 1)``, an element ``(a0, a1)`` is ``a0 + a1*u``;
* ``Fp6 = Fp2[v]/(v^3 - xi)`` with ``xi = 9 + u``;
* ``Fp12 = Fp6[w]/(w^2 - v)``, so ``w^6 = xi``. An Fp12 element is a flat tuple of 12 ints
  ``(g0, g1, g2, h0, h1, h2)`` of Fp2 pairs, meaning ``(g0 + g1*v + g2*v^2) + (h0 + h1*v + h2*v^2)*w``.

Sums of products are reduced modulo p once per coefficient (lazy reduction). The Frobenius constants
``gamma[n][k] = xi^(k*(p^n - 1)/6)`` (``n`` in {1, 2}) are computed at import. All arithmetic is
variable-time; it only ever handles public data.
"""

from __future__ import annotations

from collections.abc import Sequence

from p2pnode.crypto.bn254 import FIELD_MODULUS

__all__ = [
    "FP12_ONE",
    "FROBENIUS_GAMMA1",
    "FROBENIUS_GAMMA2",
    "W_POWER",
    "Fp2",
    "Fp12",
    "f2inv",
    "f2mul",
    "fp12_conjugate",
    "fp12_frobenius",
    "fp12_inv",
    "fp12_mul",
    "fp12_pow",
    "fp12_sqr",
]

_P = FIELD_MODULUS

Fp2 = tuple[int, int]
Fp12 = tuple[int, int, int, int, int, int, int, int, int, int, int, int]

FP12_ONE: Fp12 = (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


# --------------------------------------------------------------------------------------------------------
# Fp2


def f2mul(a0: int, a1: int, b0: int, b1: int) -> Fp2:
    p = _P
    return ((a0 * b0 - a1 * b1) % p, (a0 * b1 + a1 * b0) % p)


def f2inv(a0: int, a1: int) -> Fp2:
    p = _P
    n = pow((a0 * a0 + a1 * a1) % p, -1, p)
    return (a0 * n % p, -a1 * n % p)


def _f2pow(a: Fp2, e: int) -> Fp2:
    out = (1, 0)
    for bit in bin(e)[2:]:
        out = f2mul(out[0], out[1], out[0], out[1])
        if bit == "1":
            out = f2mul(out[0], out[1], a[0], a[1])
    return out


# Frobenius constants gamma[n][k] = xi^(k*(p^n - 1)/6) for the w^k coefficient of an Fp12 element.
FROBENIUS_GAMMA1 = [_f2pow((9, 1), k * (_P - 1) // 6) for k in range(6)]
FROBENIUS_GAMMA2 = [f2mul(g[0], g[1], g[0], -g[1] % _P) for g in FROBENIUS_GAMMA1]  # gamma1 * gamma1^p

# Positions of the w^k coefficient in the flat layout (g0, g1, g2, h0, h1, h2): g_j is w^(2j), h_j w^(2j+1).
W_POWER = (0, 2, 4, 1, 3, 5)


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
    u0, u1 = f2mul(a2, a3, a4, a5)
    t0 = ((a0 * a0 - a1 * a1 - 9 * u0 + u1) % p, (2 * a0 * a1 - u0 - 9 * u1) % p)
    u0, u1 = f2mul(a4, a5, a4, a5)
    v0, v1 = f2mul(a0, a1, a2, a3)
    t1 = ((9 * u0 - u1 - v0) % p, (u0 + 9 * u1 - v1) % p)
    v0, v1 = f2mul(a0, a1, a4, a5)
    t2 = ((a2 * a2 - a3 * a3 - v0) % p, (2 * a2 * a3 - v1) % p)
    # norm = A0 t0 + xi (A2 t1 + A1 t2)
    s0 = a4 * t1[0] - a5 * t1[1] + a2 * t2[0] - a3 * t2[1]
    s1 = a4 * t1[1] + a5 * t1[0] + a2 * t2[1] + a3 * t2[0]
    n0 = (a0 * t0[0] - a1 * t0[1] + 9 * s0 - s1) % p
    n1 = (a0 * t0[1] + a1 * t0[0] + s0 + 9 * s1) % p
    i0, i1 = f2inv(n0, n1)
    return (*f2mul(t0[0], t0[1], i0, i1), *f2mul(t1[0], t1[1], i0, i1), *f2mul(t2[0], t2[1], i0, i1))


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
        g0, g1 = gammas[W_POWER[pos]]
        out += ((c0 * g0 - c1 * g1) % p, (c0 * g1 + c1 * g0) % p)
    return tuple(out)  # type: ignore[return-value]


def fp12_frobenius(a: Fp12, power: int = 1) -> Fp12:
    """``a^(p^power)`` for ``power`` in {1, 2, 3}."""
    if power == 1:
        return _frobenius_with(a, FROBENIUS_GAMMA1, True)
    if power == 2:
        return _frobenius_with(a, FROBENIUS_GAMMA2, False)
    if power == 3:
        return _frobenius_with(_frobenius_with(a, FROBENIUS_GAMMA2, False), FROBENIUS_GAMMA1, True)
    raise ValueError("Frobenius power must be 1, 2 or 3")


def fp12_pow(a: Fp12, e: int) -> Fp12:
    """``a^e`` for ``e >= 0`` by plain square-and-multiply (tests and one-off constants)."""
    out = FP12_ONE
    for bit in bin(e)[2:]:
        out = fp12_sqr(out)
        if bit == "1":
            out = fp12_mul(out, a)
    return out
