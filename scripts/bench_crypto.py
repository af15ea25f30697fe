"""Micro-benchmarks for p2pnode.crypto.

Prints the median over several runs of: single Schnorr verification, batched verification per proof
(batches of 8, 32 and 128), proving, Ed25519 sign and verify, our G1 scalar multiplication and py_ecc's
``multiply`` for the same scalar (the baseline ratio).

    .venv/bin/python scripts/bench_crypto.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import secrets
import statistics
import sys
import time
from collections.abc import Callable

from py_ecc.fields import optimized_bn128_FQ as FQ
from py_ecc.optimized_bn128 import optimized_curve

from p2pnode.crypto import NodeKey, SpendingKey, bn254, ed25519_verify, schnorr_batch_verify, schnorr_verify


def median_us(fn: Callable[[], object], *, runs: int, per_run: int, divide: int = 1) -> float:
    """Median over ``runs`` of the mean time of ``per_run`` calls, in microseconds per ``divide`` items."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(per_run):
            fn()
        samples.append((time.perf_counter() - t0) / per_run / divide * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median is reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    runs: int = args.runs

    t0 = time.perf_counter()
    bn254._base_table()
    table_ms = (time.perf_counter() - t0) * 1e3

    key = SpendingKey.generate()
    message = secrets.token_bytes(32)
    proof = key.prove(message)
    assert schnorr_verify(key.public, message, proof)

    results: dict[str, float] = {"base_table_build_ms": table_ms}
    results["schnorr_verify_us"] = median_us(
        lambda: schnorr_verify(key.public, message, proof), runs=runs, per_run=50
    )
    for size in (8, 32, 128):
        keys = [SpendingKey.generate() for _ in range(size)]
        items = [
            (k.public, message + bytes([i % 256]), k.prove(message + bytes([i % 256])))
            for i, k in enumerate(keys)
        ]
        assert all(schnorr_batch_verify(items))
        results[f"schnorr_batch{size}_per_proof_us"] = median_us(
            functools.partial(schnorr_batch_verify, items),
            runs=runs,
            per_run=max(1, 64 // size),
            divide=size,
        )
    results["schnorr_prove_us"] = median_us(lambda: key.prove(message), runs=runs, per_run=50)

    node = NodeKey.generate()
    sig = node.sign(message)
    results["ed25519_sign_us"] = median_us(lambda: node.sign(message), runs=runs, per_run=500)
    results["ed25519_verify_us"] = median_us(
        lambda: ed25519_verify(node.public, sig, message), runs=runs, per_run=500
    )

    scalar = secrets.randbelow(bn254.CURVE_ORDER - 1) + 1
    point = bn254.g1_decode(key.public)
    py_point = (FQ(point[0]), FQ(point[1]), FQ(1))
    ours = bn254.g1_mul(point, scalar)
    theirs = optimized_curve.normalize(optimized_curve.multiply(py_point, scalar))
    assert ours == (int(theirs[0]), int(theirs[1]))
    results["g1_mul_us"] = median_us(lambda: bn254.g1_mul(point, scalar), runs=runs, per_run=50)
    results["g1_mul_base_us"] = median_us(lambda: bn254.g1_mul_base(scalar), runs=runs, per_run=50)
    results["py_ecc_multiply_us"] = median_us(
        lambda: optimized_curve.multiply(py_point, scalar), runs=min(runs, 3), per_run=5
    )
    results["py_ecc_over_g1_mul"] = results["py_ecc_multiply_us"] / results["g1_mul_us"]

    if args.json:
        json.dump({k: round(v, 3) for k, v in results.items()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for name, value in results.items():
            print(f"{name:32s} {value:12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
