"""Make (or find cached) development keys for p2pnode/zk/circuits/shielded.circom; optionally write
test vectors.

DEVELOPMENT CEREMONY, NOT FOR PRODUCTION: see p2pnode/zk/setup.py.

Usage:
    python scripts/zk_setup.py [--cache build/zk] [--vectors tests/zk/shielded]

Prints the key directory. With --vectors, also proves one SHIELD and one two-in, two-out transfer with the
Node helper and writes verification_key.json, proof_<i>.json and public_<i>.json there (the committed
vectors that tests/unit/test_shielded_circuit.py checks without Node.js).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from p2pnode.crypto import SpendingKey
from p2pnode.zk import notes
from p2pnode.zk.paths import find_zk_paths
from p2pnode.zk.prover import Prover
from p2pnode.zk.setup import DEV_CEREMONY_NOTICE, ensure_circuit_keys


def _write_vectors(keys_dir: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "verification_key.json").write_text((keys_dir / "verification_key.json").read_text())
    chain = bytes(32)
    with Prover.from_dir(keys_dir) as prover:
        alice, bob = SpendingKey.generate(), SpendingKey.generate()
        ka = notes.ShieldedKeys.from_spending_key(alice.to_bytes(), prover)
        kb = notes.ShieldedKeys.from_spending_key(bob.to_bytes(), prover)
        shields = [notes.build_shield(prover, ka, alice, chain, seq, 500 + seq) for seq in (0, 1)]
        mine = [n for order in shields for n in notes.scan(prover, ka, notes.tx_outputs(order.tx))]
        transfer = notes.build_transfer(prover, ka, chain, mine, [(kb.address, 700)])
    for i, order in enumerate([shields[0], transfer]):
        proof = notes.proof_from_bytes(order.proof)
        public = [str(x) for x in notes.public_inputs(order.tx)]
        (out / f"proof_{i}.json").write_text(json.dumps(proof, indent=1) + "\n")
        (out / f"public_{i}.json").write_text(json.dumps(public, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, help="cache directory (default: the checkout's build/zk)")
    ap.add_argument("--vectors", type=Path, help="also write shielded test vectors to this directory")
    args = ap.parse_args()
    start = time.perf_counter()
    paths = find_zk_paths(cache=args.cache)
    keys_dir = ensure_circuit_keys(paths, log=lambda line: print(line, file=sys.stderr))
    elapsed = time.perf_counter() - start
    print(f"zk setup: {keys_dir} in {elapsed:.1f} s ({DEV_CEREMONY_NOTICE})", file=sys.stderr)
    if args.vectors is not None:
        _write_vectors(keys_dir, args.vectors)
        print(f"zk setup: vectors written to {args.vectors}", file=sys.stderr)
    print(keys_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
