"""Settlement time of ``p2pnode pay`` on a local 4-validator cluster, as a user sees it.

Starts a cluster, runs ``p2pnode pay --json`` COUNT times in sequence (each a fresh process, the
payer rotating over accounts and nodes), and reports the median and 99th percentile of the
settlement time that ``pay`` itself reports (submit until applied at the node it talks to). Repeats
RUNS times on fresh clusters and prints each run and the median over runs.

    python scripts/measure_pay.py [--count 60] [--runs 3] [--validators 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from p2pnode.localnet import ClusterSpec, LocalNet, write_cluster
from p2pnode.tools.latency import percentile


async def ready(cluster: LocalNet) -> None:
    with trio.fail_after(60):
        await cluster.wait_ready()


def one_run(count: int, validators: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="p2pnode-pay-") as tmp:
        cluster = LocalNet(write_cluster(ClusterSpec(validators=validators, accounts=8), Path(tmp)))
        try:
            cluster.start()
            trio.run(ready, cluster)
            addrs = [(n.host, n.port) for n in cluster.cluster.nodes]
            accounts = [a.path for a in cluster.cluster.accounts]
            times: list[float] = []
            for i in range(count):
                host, port = addrs[i % len(addrs)]
                src = accounts[i % len(accounts)]
                dst = accounts[(i + 1) % len(accounts)]
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "p2pnode",
                        "pay",
                        "--node",
                        f"{host}:{port}",
                        "--from",
                        str(src),
                        "--to",
                        str(dst),
                        "--amount",
                        "1",
                        "--json",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                doc = json.loads(out.stdout)
                if not doc.get("settled"):
                    raise SystemExit(f"payment {i} did not settle: {doc}")
                times.append(float(doc["settlement_ms"]))
        finally:
            cluster.stop()
    times.sort()
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "max_ms": times[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = [one_run(args.count, args.validators) for _ in range(args.runs)]
    summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    if args.json:
        print(json.dumps({"runs": runs, "median": summary}))
    else:
        for i, r in enumerate(runs):
            p50, p99, top = r["p50_ms"], r["p99_ms"], r["max_ms"]
            print(f"run {i + 1}: p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {top:.1f} ms")
        print(f"median of {len(runs)} runs: p50 {summary['p50_ms']:.1f} ms  p99 {summary['p99_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
