"""Benchmark of Groth16 verification (p2pnode.crypto.groth16) on the snarkjs vectors in tests/zk/.

Prints the median over several runs of: one pairing, one verification (key prepared and cached, proof
already parsed), parsing a proof (including the G2 subgroup check), and the per-proof time of batch
verification in batches of 8 and 32 (parsing included, as a node pays it). Then the py_ecc reference
verifier once, for the ratio. Times are the process's CPU time unless --wall is given.

    .venv/bin/python scripts/bench_groth16.py [--runs N] [--circuit NAME] [--wall] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the reference verifier, which lives with the tests

from p2pnode.crypto import bn254, groth16, pairing  # noqa: E402
from tests.unit.test_groth16 import groth16_verify_reference  # noqa: E402

# CPU time of this process by default: the work is single-threaded, so on an idle machine it equals wall
# time, and on a shared one it does not count the time spent waiting for a core. --wall measures wall time.
_clock = time.process_time


def median_ms(fn: Callable[[], object], *, runs: int, divide: int = 1) -> float:
    samples = []
    for _ in range(runs):
        t0 = _clock()
        fn()
        samples.append((_clock() - t0) / divide * 1e3)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="runs per measurement (default 15)")
    parser.add_argument(
        "--circuit", default="preimage64", help="vector set under tests/zk (default preimage64)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--wall", action="store_true", help="measure wall-clock time instead of CPU time")
    args = parser.parse_args(argv)
    global _clock
    if args.wall:
        _clock = time.perf_counter

    vectors = ROOT / "tests" / "zk" / args.circuit
    vk_json = json.loads((vectors / "verification_key.json").read_text())
    proofs_json: list[tuple[Any, Any]] = []
    for path in sorted(vectors.glob("proof_*.json")):
        public_path = vectors / path.name.replace("proof_", "public_")
        proofs_json.append((json.loads(path.read_text()), json.loads(public_path.read_text())))

    vk = groth16.VerifyingKey.from_json(vk_json)
    proof = groth16.Proof.from_json(proofs_json[0][0])
    public = groth16.parse_public(proofs_json[0][1])
    assert groth16.groth16_verify(vk, proof, public)  # also prepares and caches the key

    def batch(n: int) -> Callable[[], object]:
        chosen = [proofs_json[i % len(proofs_json)] for i in range(n)]

        def run() -> None:
            items = [(groth16.Proof.from_json(p), groth16.parse_public(s)) for p, s in chosen]
            assert groth16.groth16_batch_verify(vk, items)

        return run

    runs = args.runs
    g1, g2 = bn254.G1_GENERATOR, pairing.G2_GENERATOR
    results: dict[str, Any] = {
        "circuit": args.circuit,
        "n_public": vk.n_public,
        "runs": runs,
        "clock": "wall" if args.wall else "cpu",
        "pairing_ms": median_ms(lambda: pairing.pairing(g1, g2), runs=runs),
        "verify_ms": median_ms(lambda: groth16.groth16_verify(vk, proof, public), runs=runs),
        "parse_proof_ms": median_ms(lambda: groth16.Proof.from_json(proofs_json[0][0]), runs=runs),
        "batch8_per_proof_ms": median_ms(batch(8), runs=max(3, runs // 2), divide=8),
        "batch32_per_proof_ms": median_ms(batch(32), runs=max(3, runs // 3), divide=32),
    }
    t0 = _clock()
    assert groth16_verify_reference(vk_json, *proofs_json[0])
    results["py_ecc_verify_ms"] = (_clock() - t0) * 1e3
    results["speedup_single"] = results["py_ecc_verify_ms"] / (
        results["verify_ms"] + results["parse_proof_ms"]
    )

    if args.json:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))
        return 0
    print(
        f"Groth16 on BN254, circuit {args.circuit} ({vk.n_public} public inputs), "
        f"median of {runs} runs ({results['clock']} time)"
    )
    print(f"  pairing                         {results['pairing_ms']:8.2f} ms")
    print(f"  verify (parsed proof)           {results['verify_ms']:8.2f} ms")
    print(f"  parse proof (+ subgroup check)  {results['parse_proof_ms']:8.2f} ms")
    print(f"  batch of 8, per proof           {results['batch8_per_proof_ms']:8.2f} ms")
    print(f"  batch of 32, per proof          {results['batch32_per_proof_ms']:8.2f} ms")
    ref, ratio = results["py_ecc_verify_ms"], results["speedup_single"]
    print(f"  py_ecc reference, one verify    {ref:8.2f} ms  (x{ratio:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
