"""``p2pnode bench``: arguments of :func:`p2pnode.tools.bench.run_bench_command`.

Exit status: 0 when every payment settled and all nodes agree on the state root; 1 otherwise; 2 for
usage or setup errors (missing files, unreachable nodes, underfunded accounts).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from p2pnode.tools.bench_load import DEFAULT_COUNT, DEFAULT_SHIELDED_COUNT, DEFAULT_WINDOW, BenchOptions

BENCH_EPILOG = (
    "The crypto primitives are timed in thread CPU time before the load, once the nodes are quiet. "
    "The plain-crypto limit is cores / (the crypto every node must do per payment, summed over the "
    "nodes); settled/s may exceed 100% of it when nodes verify or sign in batches: that is not an error. "
    "Per-role counts come from the nodes' status counters; n/a where a node does not report one."
)


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    parser.epilog = BENCH_EPILOG
    parser.add_argument(
        "--dir", required=True, type=Path, help="cluster directory (made by testnet / net up)"
    )
    load = parser.add_mutually_exclusive_group()
    load.add_argument(
        "--rate",
        type=float,
        help="open loop: submit R payments per second; latency counts from each payment's scheduled "
        "send, and the report says SCHEDULE NOT KEPT below 95%% of R or with lag p99 over 100 ms",
    )
    load.add_argument(
        "--window", type=int, help=f"closed loop: at most W payments in flight (default {DEFAULT_WINDOW})"
    )
    parser.add_argument(
        "--count",
        type=int,
        help=f"payments to make (default {DEFAULT_COUNT}; {DEFAULT_SHIELDED_COUNT} with --shielded)",
    )
    parser.add_argument("--amount", type=int, default=1, help="amount of each payment (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a payment may take (default 30)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--shielded",
        action="store_true",
        help="SHIELD orders with Groth16 proofs (account -> own note) instead of transparent transfers",
    )
    from p2pnode.zk.paths import add_zk_path_args

    add_zk_path_args(parser)


def cmd_bench(args: argparse.Namespace) -> int:
    from p2pnode.tools.bench import BenchRun, run_bench_command
    from p2pnode.zk.paths import zk_paths_from_args

    count = args.count
    if count is None:
        count = DEFAULT_SHIELDED_COUNT if args.shielded else DEFAULT_COUNT
    bad_rate = args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0)
    if count <= 0 or args.amount <= 0 or bad_rate or (args.window is not None and args.window <= 0):
        print("p2pnode bench: --count, --amount, --rate and --window must be positive", file=sys.stderr)
        return 2
    opts = BenchOptions(
        count=count,
        amount=args.amount,
        rate=args.rate,
        window=args.window if args.window is not None else DEFAULT_WINDOW,
        timeout=args.timeout,
        shielded=args.shielded,
    )
    zk = zk_paths_from_args(args) if args.shielded else None
    return run_bench_command(BenchRun(directory=args.dir, opts=opts, json=args.json, zk=zk))
