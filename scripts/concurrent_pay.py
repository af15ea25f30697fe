"""Two ``p2pnode pay`` from one account file through two different nodes at once, many times over.

Starts a 4-validator cluster (``p2pnode net up --validators 4 --accounts 4 --no-shielded``), then
runs TRIES rounds: in each, two ``p2pnode pay`` processes start together from account-0, one through
node-0 to account-1, one through node-1 to account-2 (different payments, so two orders for one seq
would conflict). A round is a collision if either pay did not settle, both took the same seq, or a
node reports a blocked slot. At the end every node must hold account-0 at next seq 2 x TRIES. Prints
the number of collisions; the cluster is torn down (``net down``) also on failure.

    python scripts/concurrent_pay.py [--tries 50] [--dir DIR] [--json]

Exit 0 when there was no collision, 1 otherwise, 2 if the cluster could not be used.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAY_TIMEOUT_S = 30


def p2pnode(*args: str) -> list[str]:
    return [sys.executable, "-m", "p2pnode", *args]


def run_json(*args: str) -> dict[str, Any]:
    proc = subprocess.run(p2pnode(*args), capture_output=True, text=True, timeout=60, check=False)
    if not proc.stdout.strip():
        raise RuntimeError(f"p2pnode {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def one_round(addrs: list[str], accounts: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Two simultaneous pays from account-0; their JSON results and their stderr."""
    procs = [
        subprocess.Popen(
            p2pnode(
                "pay",
                "--node",
                addrs[i],
                "--from",
                accounts[0],
                "--to",
                accounts[1 + i],
                "--amount",
                str(1 + i),
                "--json",
                "--timeout",
                str(PAY_TIMEOUT_S),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    docs, errs = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=PAY_TIMEOUT_S + 30)
        try:
            docs.append(json.loads(out.strip().splitlines()[-1]) if out.strip() else {"settled": False})
        except ValueError:
            docs.append({"settled": False, "error": out.strip()})
        errs.append(err.strip())
    return docs, errs


def blocked_slots(addrs: list[str]) -> list[Any]:
    slots: list[Any] = []
    for addr in addrs:
        slots += run_json("status", "--node", addr, "--json").get("blocked_slots") or []
    return slots


def run(tries: int, d: Path, log: Any) -> dict[str, Any]:
    subprocess.run(
        p2pnode("net", "up", "--validators", "4", "--accounts", "4", "--no-shielded", "--dir", str(d)),
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    testnet = json.loads((d / "cluster.json").read_text())
    addrs = [f"{n['host']}:{n['port']}" for n in testnet["nodes"]]
    accounts = [str(d / a) for a in testnet["accounts"]]
    collisions: list[dict[str, Any]] = []
    start = time.monotonic()
    for i in range(tries):
        docs, errs = one_round(addrs, accounts)
        seqs = [doc.get("seq") for doc in docs]
        problem = ""
        if not all(doc.get("settled") for doc in docs):
            problem = "; ".join(
                e or str(doc.get("error"))
                for doc, e in zip(docs, errs, strict=True)
                if not doc.get("settled")
            )
        elif seqs[0] == seqs[1]:
            problem = f"both took seq {seqs[0]}"
        if problem:
            collisions.append({"try": i, "seqs": seqs, "problem": problem})
            print(f"try {i}: collision: {problem}", file=log, flush=True)
    elapsed = time.monotonic() - start
    slots = blocked_slots(addrs)
    # Every node ends with account-0 at next seq 2 x tries (once it applied everything).
    address = json.loads(Path(accounts[0]).read_text())["address"]
    deadline = time.monotonic() + 30
    while True:
        seqs = [run_json("balance", "--node", a, address, "--json")["next_seq"] for a in addrs]
        if all(s == 2 * tries for s in seqs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return {
        "tries": tries,
        "collisions": len(collisions) + (1 if slots else 0),
        "collided_tries": collisions,
        "blocked_slots": slots,
        "next_seq_per_node": seqs,
        "expected_next_seq": 2 * tries,
        "seconds": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=50, help="rounds of two simultaneous pays (default 50)")
    parser.add_argument("--dir", type=Path, help="cluster directory (default: a temporary one, removed)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="p2pnode-concurrent-") as tmp:
        d = args.dir or Path(tmp) / "cluster"
        try:
            result = run(args.tries, d, sys.stderr)
        except (subprocess.SubprocessError, RuntimeError, OSError, ValueError, KeyError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            print(f"concurrent_pay: error: {exc} {detail}".strip(), file=sys.stderr)
            return 2
        finally:
            subprocess.run(
                p2pnode("net", "down", "--dir", str(d)), capture_output=True, timeout=60, check=False
            )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['tries']} tries of two simultaneous pays from one account via two nodes: "
            f"{result['collisions']} collisions ({result['seconds']} s); account-0 next seq per node "
            f"{result['next_seq_per_node']} (expected {result['expected_next_seq']})"
        )
    ok = result["collisions"] == 0 and all(
        s == result["expected_next_seq"] for s in result["next_seq_per_node"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
