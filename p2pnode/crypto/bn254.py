"""Fast G1 arithmetic for BN254 (alt_bn128) on plain Python ints.

The curve is ``y^2 = x^3 + 3`` over F_p with generator ``(1, 2)`` and prime order ``r``. py_ecc wraps
every field element in an object, which costs roughly 10x; this module keeps coordinates as bare ints and
is checked against py_ecc in the tests.

Representations:

* affine points are ``(x, y)`` tuples; the identity has no affine form and is ``None`` where a helper can
  return it;
* Jacobian points are ``(X, Y, Z)`` tuples meaning ``(X/Z^2, Y/Z^3)``; ``Z == 0`` is the identity.
  Inversions (``pow(z, -1, p)``) happen only when converting back to affine, batched when there are many.

Speed-ups used:

* a fixed-base table for the generator (32 windows of 8 bits), built on first use (~0.1 s) so that
  importing stays cheap; ``k*G`` is then at most 32 mixed additions and no doublings;
* the GLV endomorphism ``phi(x, y) = (beta*x, y) = lambda*(x, y)``: a 254-bit scalar is split into two
  ~127-bit halves, which halves the doublings;
* interleaved width-5 wNAF (Straus) for few points and signed-digit bucket accumulation (Pippenger) for
  many, both with affine tables so that every addition is a mixed one.

All arithmetic here is variable-time. That is fine for verification, which only handles public data. The
prover uses the fixed-base path for its secret nonce and key; Python big-int arithmetic is not
constant-time in any case, and the wallet is the only place where secrets are multiplied.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CURVE_ORDER",
    "FIELD_MODULUS",
    "G1_GENERATOR",
    "G1Point",
    "g1_add",
    "g1_decode",
    "g1_encode",
    "g1_is_on_curve",
    "g1_msm_is_identity",
    "g1_mul",
    "g1_mul_base",
    "g1_neg",
    "msm",
]

FIELD_MODULUS = 21888242871839275222246405745257275088696311157297823662689037894645226208583
CURVE_ORDER = 21888242871839275222246405745257275088548364400416034343698204186575808495617
CURVE_B = 3
G1_GENERATOR = (1, 2)

_P = FIELD_MODULUS
_R = CURVE_ORDER

# GLV constants. BETA is a primitive cube root of unity in F_p and LAMBDA one in F_r, paired so that
# (BETA*x, y) == LAMBDA*(x, y) for every point. (A1, B1), (A2, B2) is a reduced basis of the lattice
# {(a, b) : a + b*LAMBDA == 0 mod r}, found with the extended Euclidean algorithm; A1*B2 - A2*B1 == r.
# The tests re-derive all of these relations.
_BETA = 2203960485148121921418603742825762020974279258880205651966
_LAMBDA = 4407920970296243842393367215006156084916469457145843978461
_A1 = 9931322734385697763
_B1 = -147946756881789319000765030803803410728
_A2 = 147946756881789319010696353538189108491
_B2 = 9931322734385697763

G1Point = tuple[int, int]
_Jac = tuple[int, int, int]

_INFINITY: _Jac = (1, 1, 0)

# Straus window width (odd multiples up to 15*P) and the MSM size above which Pippenger wins; both measured
# with scripts/bench_crypto.py.
_WNAF_W = 5
_PIPPENGER_MIN = 64


# --------------------------------------------------------------------------------------------------------
# Encoding


def g1_is_on_curve(pt: G1Point) -> bool:
    """True iff ``pt`` has coordinates in ``[0, p)`` and satisfies the curve equation."""
    x, y = pt
    return 0 <= x < _P and 0 <= y < _P and (y * y - x * x * x - CURVE_B) % _P == 0


def g1_decode(data: bytes) -> G1Point:
    """Parse a 64-byte ``x || y`` (big-endian) encoding into an affine point.

    Error handling: raises ``ValueError`` naming the reason for a wrong length, a coordinate ``>= p``,
    the identity (encoded as all zeros) or a point off the curve. G1 of BN254 has cofactor 1, so a point
    on the curve is in the prime-order subgroup and no further subgroup check is needed.
    """
    if len(data) != 64:
        raise ValueError(f"G1 point must be 64 bytes, got {len(data)}")
    x = int.from_bytes(data[:32], "big")
    y = int.from_bytes(data[32:], "big")
    if x >= _P or y >= _P:
        raise ValueError("G1 coordinate not below the field modulus")
    if x == 0 and y == 0:
        raise ValueError("G1 point is the identity")
    if (y * y - x * x * x - CURVE_B) % _P != 0:
        raise ValueError("G1 point not on the curve")
    return (x, y)


def g1_encode(pt: G1Point) -> bytes:
    """The 64-byte encoding of an affine point (the caller guarantees it is a valid point)."""
    return pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


# --------------------------------------------------------------------------------------------------------
# Jacobian primitives (a = 0 short Weierstrass formulas, cf. the Explicit-Formulas Database)


def _jdouble(pt: _Jac) -> _Jac:
    x, y, z = pt
    if z == 0 or y == 0:
        return _INFINITY
    p = _P
    a = x * x % p
    b = y * y % p
    c = b * b % p
    d = 2 * ((x + b) ** 2 - a - c) % p
    e = 3 * a
    x3 = (e * e - 2 * d) % p
    return (x3, (e * (d - x3) - 8 * c) % p, 2 * y * z % p)


def _jmadd(pt: _Jac, qx: int, qy: int) -> _Jac:
    """Jacobian + affine."""
    x1, y1, z1 = pt
    if z1 == 0:
        return (qx, qy, 1)
    p = _P
    zz = z1 * z1 % p
    h = (qx * zz - x1) % p
    rr = (qy * zz * z1 - y1) % p
    if h == 0:
        if rr == 0:
            return _jdouble(pt)
        return _INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (rr * rr - hhh - 2 * v) % p
    return (x3, (rr * (v - x3) - y1 * hhh) % p, z1 * h % p)


def _jadd(pt: _Jac, qt: _Jac) -> _Jac:
    """Jacobian + Jacobian."""
    x1, y1, z1 = pt
    x2, y2, z2 = qt
    if z1 == 0:
        return qt
    if z2 == 0:
        return pt
    p = _P
    z1z1 = z1 * z1 % p
    z2z2 = z2 * z2 % p
    u1 = x1 * z2z2 % p
    s1 = y1 * z2 * z2z2 % p
    h = (x2 * z1z1 - u1) % p
    rr = (y2 * z1 * z1z1 - s1) % p
    if h == 0:
        if rr == 0:
            return _jdouble(pt)
        return _INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    x3 = (rr * rr - hhh - 2 * v) % p
    return (x3, (rr * (v - x3) - s1 * hhh) % p, z1 * z2 % p * h % p)


def _to_affine(pt: _Jac) -> G1Point | None:
    x, y, z = pt
    if z == 0:
        return None
    zi = pow(z, -1, _P)
    zi2 = zi * zi % _P
    return (x * zi2 % _P, y * zi2 * zi % _P)


def _batch_to_affine(pts: Sequence[_Jac]) -> list[G1Point]:
    """Normalize many non-identity points with a single inversion (Montgomery's trick)."""
    p = _P
    n = len(pts)
    if n == 0:
        return []
    prefix = [0] * n
    acc = 1
    for i, (_, _, z) in enumerate(pts):
        prefix[i] = acc
        acc = acc * z % p
    inv = pow(acc, -1, p)
    out: list[G1Point] = [(0, 0)] * n
    for i in range(n - 1, -1, -1):
        x, y, z = pts[i]
        zi = inv * prefix[i] % p
        inv = inv * z % p
        zi2 = zi * zi % p
        out[i] = (x * zi2 % p, y * zi2 * zi % p)
    return out


def _jac_equals_affine(pt: _Jac, q: G1Point) -> bool:
    x, y, z = pt
    if z == 0:
        return False
    zz = z * z % _P
    return x == q[0] * zz % _P and y == q[1] * zz * z % _P


# --------------------------------------------------------------------------------------------------------
# Scalars


def _signed(k: int) -> int:
    """``k mod r`` as the representative of smallest absolute value."""
    k %= _R
    return k - _R if k > _R >> 1 else k


def _glv_split(k: int) -> tuple[int, int]:
    """Signed ``(k1, k2)`` of about 127 bits each with ``k1 + k2*LAMBDA == k (mod r)``, for 0 <= k < r."""
    c1 = (2 * _B2 * k + _R) // (2 * _R)
    c2 = (-2 * _B1 * k + _R) // (2 * _R)
    return k - c1 * _A1 - c2 * _A2, -c1 * _B1 - c2 * _B2


def _wnaf(k: int, w: int) -> list[tuple[int, int]]:
    """Non-zero digits of the width-``w`` NAF of ``k > 0`` as ``(position, odd digit)`` pairs."""
    full = 1 << w
    half = full >> 1
    mask = full - 1
    out: list[tuple[int, int]] = []
    pos = 0
    while k:
        tz = (k & -k).bit_length() - 1
        k >>= tz
        pos += tz
        d = k & mask
        if d >= half:
            d -= full
        out.append((pos, d))
        k = (k - d) >> w
        pos += w
    return out


def _split_terms(points: Sequence[G1Point], scalars: Sequence[int]) -> list[tuple[G1Point, int, bool]]:
    """Rewrite ``sum k_i P_i`` as ``sum m_j Q_j`` with ``0 < m_j < 2**129``.

    Returns ``(affine point, positive scalar, is_phi)``; ``is_phi`` marks terms whose point is the
    endomorphism image of the given one (the caller multiplies x by BETA and can share a table with the base).
    Negative scalars are folded into the point's y.
    """
    out: list[tuple[G1Point, int, bool]] = []
    p = _P
    for (x, y), k in zip(points, scalars, strict=True):
        k = _signed(k)
        if k == 0:
            continue
        if -(1 << 128) < k < (1 << 128):
            # Small scalars (random batch weights) gain nothing from the split.
            out.append(((x, y) if k > 0 else (x, p - y), abs(k), False))
            continue
        k1, k2 = _glv_split(k % _R)
        if k1:
            out.append(((x, y) if k1 > 0 else (x, p - y), abs(k1), False))
        if k2:
            out.append(((x, y) if k2 > 0 else (x, p - y), abs(k2), True))
    return out


# --------------------------------------------------------------------------------------------------------
# Fixed base


_BASE_TABLE: list[list[G1Point]] | None = None


def _base_table() -> list[list[G1Point]]:
    """``table[i][j] == j * 256**i * G`` for ``i < 32`` and ``1 <= j <= 255`` (index 0 unused)."""
    global _BASE_TABLE
    if _BASE_TABLE is None:
        table: list[list[G1Point]] = []
        bx, by = G1_GENERATOR
        for _ in range(32):
            row: list[_Jac] = [(bx, by, 1)]
            for _ in range(255):
                row.append(_jmadd(row[-1], bx, by))
            aff = _batch_to_affine(row)
            table.append([(0, 0)] + aff[:255])
            bx, by = aff[255]
        _BASE_TABLE = table
    return _BASE_TABLE


def _mul_base_jac(k: int) -> _Jac:
    k %= _R
    table = _base_table()
    acc = _INFINITY
    for i, byte in enumerate(k.to_bytes(32, "little")):
        if byte:
            x, y = table[i][byte]
            acc = _jmadd(acc, x, y)
    return acc


def g1_mul_base(k: int) -> G1Point | None:
    """``k * G`` for the generator G; ``None`` if ``k`` is a multiple of r."""
    return _to_affine(_mul_base_jac(k))


# --------------------------------------------------------------------------------------------------------
# Variable base: Straus (interleaved wNAF) and Pippenger


def _straus_jac(terms: list[tuple[G1Point, int, bool]]) -> _Jac:
    p = _P
    beta = _BETA
    n_odd = 1 << (_WNAF_W - 2)  # P, 3P, ..., 15P
    # Tables of odd multiples: double every base once (one batched inversion), then mixed additions, then a
    # second batched inversion for the whole table.
    # Terms with scalar 1 (the R of a single verification) need no table: they are added once at the end.
    direct = [(pt[0] * beta % p if is_phi else pt[0], pt[1]) for pt, k, is_phi in terms if k == 1]
    terms = [t for t in terms if t[1] != 1]
    if not terms:
        acc = _INFINITY
        for qx, qy in direct:
            acc = _jmadd(acc, qx, qy)
        return acc
    # The two halves of a GLV split share one table (up to the sign of y, and x*BETA for the phi half).
    offsets: dict[int, tuple[int, int]] = {}  # x -> (offset into the table, y the table was built for)
    bases: list[G1Point] = []
    for pt, _, _ in terms:
        if pt[0] not in offsets:
            offsets[pt[0]] = (len(bases) * n_odd, pt[1])
            bases.append(pt)
    twos = _batch_to_affine([_jdouble((x, y, 1)) for x, y in bases])
    rows: list[_Jac] = []
    for (x, y), (tx, ty) in zip(bases, twos, strict=True):
        cur: _Jac = (x, y, 1)
        rows.append(cur)
        for _ in range(n_odd - 1):
            cur = _jmadd(cur, tx, ty)
            rows.append(cur)
    flat = _batch_to_affine(rows)

    # Bucket the additions by bit position so the main loop only visits non-zero digits.
    maxpos = max(k.bit_length() for _, k, _ in terms) + 1
    adds: list[list[G1Point]] = [[] for _ in range(maxpos)]
    for pt, k, is_phi in terms:
        base, table_y = offsets[pt[0]]
        flip = pt[1] != table_y  # this term's point is the negation of the table's base
        for pos, d in _wnaf(k, _WNAF_W):
            x, y = flat[base + (abs(d) >> 1)]
            if is_phi:
                x = x * beta % p
            adds[pos].append((x, y) if (d > 0) != flip else (x, p - y))
    adds[0].extend(direct)

    # Main loop with doubling and mixed addition inlined: this is where nearly all the time goes.
    x1, y1, z1 = _INFINITY
    for pos in range(maxpos - 1, -1, -1):
        if z1:
            # y1 is never 0: r is odd, so no point of order 2 exists in G1.
            a = x1 * x1 % p
            b = y1 * y1 % p
            c = b * b % p
            d2 = 2 * ((x1 + b) ** 2 - a - c) % p
            e = 3 * a
            z1 = 2 * y1 * z1 % p
            x1 = (e * e - 2 * d2) % p
            y1 = (e * (d2 - x1) - 8 * c) % p
        for qx, qy in adds[pos]:
            if z1 == 0:
                x1, y1, z1 = qx, qy, 1
                continue
            zz = z1 * z1 % p
            h = (qx * zz - x1) % p
            rr = (qy * zz * z1 - y1) % p
            if h == 0:
                x1, y1, z1 = _jdouble((x1, y1, z1)) if rr == 0 else _INFINITY
                continue
            hh = h * h % p
            hhh = h * hh % p
            v = x1 * hh % p
            x1 = (rr * rr - hhh - 2 * v) % p
            y1 = (rr * (v - x1) - y1 * hhh) % p
            z1 = z1 * h % p
    return (x1, y1, z1)


def _pippenger_window(n: int) -> int:
    # Minimizes (bits / c) * (n + 2**c) for ~128-bit scalars; tuned with scripts/bench_crypto.py.
    if n < 128:
        return 5
    if n < 256:
        return 6
    if n < 640:
        return 7
    return 8


def _pippenger_jac(terms: list[tuple[G1Point, int, bool]]) -> _Jac:
    p = _P
    beta = _BETA
    c = _pippenger_window(len(terms))
    full = 1 << c
    half = full >> 1
    mask = full - 1
    bits = max(k.bit_length() for _, k, _ in terms) + 1
    n_windows = (bits + c - 1) // c

    # Signed digits in (-half, half]; a digit above half borrows from the next window.
    windows: list[list[tuple[int, int, int]]] = [[] for _ in range(n_windows)]
    for (x, y), k, is_phi in terms:
        if is_phi:
            x = x * beta % p
        ny = p - y
        w = 0
        while k:
            d = k & mask
            k >>= c
            if d > half:
                d -= full
                k += 1
            if d > 0:
                windows[w].append((d, x, y))
            elif d < 0:
                windows[w].append((-d, x, ny))
            w += 1

    acc = _INFINITY
    for w in range(n_windows - 1, -1, -1):
        for _ in range(c):
            acc = _jdouble(acc)
        buckets: list[_Jac | None] = [None] * (half + 1)
        for d, qx, qy in windows[w]:
            bucket = buckets[d]
            if bucket is None:
                buckets[d] = (qx, qy, 1)
                continue
            x1, y1, z1 = bucket
            # Inlined mixed addition; buckets are never the identity except by cancellation.
            if z1 == 0:
                buckets[d] = (qx, qy, 1)
                continue
            zz = z1 * z1 % p
            h = (qx * zz - x1) % p
            rr = (qy * zz * z1 - y1) % p
            if h == 0:
                buckets[d] = _jdouble(bucket) if rr == 0 else _INFINITY
                continue
            hh = h * h % p
            hhh = h * hh % p
            v = x1 * hh % p
            x3 = (rr * rr - hhh - 2 * v) % p
            buckets[d] = (x3, (rr * (v - x3) - y1 * hhh) % p, z1 * h % p)
        # sum_d d * bucket[d] as a running sum from the top.
        running = _INFINITY
        total = _INFINITY
        for d in range(half, 0, -1):
            bucket = buckets[d]
            if bucket is not None:
                running = _jadd(running, bucket)
            total = _jadd(total, running)
        acc = _jadd(acc, total)
    return acc


def _msm_jac(points: Sequence[G1Point], scalars: Sequence[int]) -> _Jac:
    terms = _split_terms(points, scalars)
    if not terms:
        return _INFINITY
    if len(terms) >= _PIPPENGER_MIN:
        return _pippenger_jac(terms)
    return _straus_jac(terms)


# --------------------------------------------------------------------------------------------------------
# Public helpers


def g1_neg(pt: G1Point) -> G1Point:
    """``-pt``."""
    return (pt[0], (_P - pt[1]) % _P)


def g1_add(a: G1Point | None, b: G1Point | None) -> G1Point | None:
    """``a + b``; ``None`` is the identity."""
    if a is None:
        return b
    if b is None:
        return a
    return _to_affine(_jmadd((a[0], a[1], 1), b[0], b[1]))


def g1_mul(pt: G1Point, k: int) -> G1Point | None:
    """``k * pt`` for any integer ``k``; ``None`` if the result is the identity."""
    return _to_affine(_msm_jac([pt], [k]))


def msm(points: Sequence[G1Point], scalars: Sequence[int]) -> G1Point | None:
    """``sum(k_i * P_i)``; ``None`` if the result is the identity. Lengths must match."""
    return _to_affine(_msm_jac(points, scalars))


def g1_msm_is_identity(points: Sequence[G1Point], scalars: Sequence[int], base_scalar: int = 0) -> bool:
    """True iff ``base_scalar*G + sum(k_i * P_i)`` is the identity.

    This is the shape of every verification equation (single and batched Schnorr), evaluated without any
    inversion: the fixed-base part and the multi-scalar part are added in Jacobian form.
    """
    total = _jadd(_mul_base_jac(base_scalar), _msm_jac(points, scalars))
    return total[2] == 0
