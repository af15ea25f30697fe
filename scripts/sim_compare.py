#!/usr/bin/env python3
"""Calibration you can check: the same workload on a real local cluster and in the simulator.

For each cluster size (4 validators; 4 validators + 12 full nodes) and network profile (lan, aws-5):

- real: ``p2pnode net up --network PROFILE`` (node processes on this machine, links through the link
  model), then ``p2pnode bench --rate R --count N`` (light load: client latency from each payment's
  scheduled send) and ``p2pnode bench --window W --count M`` (saturation: settled/s), then ``net down``;
- sim: ``p2pnode sim`` with the same nodes, accounts, load and profile, the nodes sharing this machine's
  cores (``--cores``, as the real processes do), with the cost table given (default: the shipped one);
  with ``--fit``, a table measured now by ``p2pnode sim calibrate`` whose one overhead factor is fitted to
  the first real cluster's saturation (4 validators, lan): that point is then fitted, the others are not.

Prints both side by side with sim/real ratios, and flags p50/p99 outside +-25 % and throughput outside
+-30 %. Every cluster it starts is stopped again, also on failure or Ctrl-C.

    .venv/bin/python scripts/sim_compare.py --out /tmp/compare [--costs costs.json] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
P2PNODE = [sys.executable, "-m", "p2pnode"]
CLUSTERS = {4: "configs/local-4.toml", 16: "configs/local-16.toml"}
PROFILES = ("lan", "aws-5")
FULL_DEGREE = 6  # [defaults.peers] target of configs/local-16.toml


def _run(args: list[str], timeout: float) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[2:])}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    return done.stdout


def real(nodes: int, profile: str, out: Path, args: argparse.Namespace, port: int) -> dict[str, Any]:
    d = out / f"real-{nodes}-{profile}"
    if d.exists():
        shutil.rmtree(d)
    net = ROOT / "configs/network" / f"{profile}.toml"
    up = [*P2PNODE, "net", "up", "--config", CLUSTERS[nodes], "--dir", str(d), "--network", str(net)]
    _run([*up, "--base-port", str(port)], 300)
    try:
        # A short run first: the first payments of a fresh cluster pay for warming up (verifier worker
        # start, first connections), which is not what either side is measured for.
        warm = [*P2PNODE, "bench", "--dir", str(d), "--rate", str(args.rate), "--count", "20", "--json"]
        _run(warm, 600)
        light = json.loads(
            _run(
                [
                    *P2PNODE,
                    "bench",
                    "--dir",
                    str(d),
                    "--rate",
                    str(args.rate),
                    "--count",
                    str(args.count),
                    "--json",
                ],
                600,
            )
        )
        heavy = json.loads(
            _run(
                [
                    *P2PNODE,
                    "bench",
                    "--dir",
                    str(d),
                    "--window",
                    str(args.window),
                    "--count",
                    str(args.saturate),
                    "--json",
                ],
                900,
            )
        )
    finally:
        subprocess.run([*P2PNODE, "net", "down", "--dir", str(d)], capture_output=True, timeout=120, cwd=ROOT)
    return {
        "p50_ms": light["client_latency"]["p50"],
        "p99_ms": light["client_latency"]["p99"],
        "settled_per_s": heavy["settled_per_s"],
        "accounts": light["accounts"],
    }


def sim(nodes: int, profile: str, out: Path, args: argparse.Namespace, accounts: int) -> dict[str, Any]:
    base = [*P2PNODE, "sim", "--nodes", str(nodes), "--validators", "4", "--accounts", str(accounts)]
    base += ["--full-degree", str(FULL_DEGREE)]  # the clusters' peers.target
    base += ["--network", str(ROOT / "configs/network" / f"{profile}.toml"), "--cores", str(args.cores)]
    base += ["--seed", str(args.seed), "--json"] + (["--costs", str(args.costs)] if args.costs else [])
    light = json.loads(
        _run(
            [
                *base,
                "--payments",
                str(args.count),
                "--rate",
                str(args.rate),
                "--out",
                str(out / f"sim-{nodes}-{profile}"),
            ],
            900,
        )
    )
    heavy = json.loads(_run([*base, "--payments", str(args.saturate), "--window", str(args.window)], 900))
    return {
        "p50_ms": light["latency"]["client"]["p50_ms"],
        "p99_ms": light["latency"]["client"]["p99_ms"],
        "settled_per_s": heavy["settled_per_s"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--costs", type=Path)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--saturate", type=int, default=300)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--base-port", type=int, default=7600)
    ap.add_argument("--seed", type=int, default=1, help="the simulator's seed (keys, topology, links)")
    ap.add_argument("--sizes", default="4,16")
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--fit", action="store_true", help="calibrate now, fitted to the first real cluster")
    ap.add_argument(
        "--real-from",
        type=Path,
        metavar="COMPARE.json",
        help="take the real clusters' figures from an earlier run's compare.json (only the sim runs)",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = {}
    if args.real_from:
        earlier = {(r["nodes"], r["profile"]): r["real"] for r in json.loads(args.real_from.read_text())}
    rows = []
    for nodes in (int(x) for x in args.sizes.split(",")):
        for profile in args.profiles.split(","):
            if (nodes, profile) in earlier:
                r = earlier[(nodes, profile)]
            else:
                print(f"{nodes} nodes, {profile}: real cluster", file=sys.stderr, flush=True)
                r = real(nodes, profile, args.out, args, args.base_port)
            if args.fit and args.costs is None:
                costs = args.out / "costs.json"
                print(
                    f"calibrating, fitted to {r['settled_per_s']} settled/s and p50 {r['p50_ms']} ms",
                    file=sys.stderr,
                    flush=True,
                )
                fit = ["--fit-settled-per-s", str(r["settled_per_s"]), "--cores", str(args.cores)]
                if args.rate == 5.0 and profile == "lan" and nodes == 4:
                    fit += ["--fit-light-p50-ms", str(r["p50_ms"])]
                _run([*P2PNODE, "sim", "calibrate", "--out", str(costs), *fit], 900)
                args.costs = costs
            print(f"{nodes} nodes, {profile}: simulator", file=sys.stderr, flush=True)
            s = sim(nodes, profile, args.out, args, r["accounts"])
            rows.append({"nodes": nodes, "profile": profile, "real": r, "sim": s})
    (args.out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = f"{'cluster':<16}{'':<4}{'p50 ms':>9}{'p99 ms':>9}{'settled/s':>11}"
    print(f"{head}   light load {args.rate:g}/s, saturation with window {args.window}")
    for row in rows:
        label = f"{row['nodes']} nodes {row['profile']}"
        for side in ("real", "sim"):
            v = row[side]
            name = label if side == "real" else ""
            print(f"{name:<16}{side:<4}{v['p50_ms']:>9.1f}{v['p99_ms']:>9.1f}{v['settled_per_s']:>11.1f}")
        ratios = []
        for key, band in (("p50_ms", 0.25), ("p99_ms", 0.25), ("settled_per_s", 0.30)):
            ratio = row["sim"][key] / row["real"][key] if row["real"][key] else float("nan")
            ratios.append(f"{ratio:.2f}{'' if abs(ratio - 1) <= band else ' (outside)'}")
        print(f"{'':<16}{'sim/real':<4} " + "  ".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
