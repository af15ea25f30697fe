"""``p2pnode sim`` and ``p2pnode sim calibrate``: arguments of :mod:`p2pnode.sim`.

Exit status: 0 when every payment settled on every node and all roots agree; 1 otherwise; 2 for usage
errors (a bad profile or cost table, impossible sizes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_NETWORK = "configs/network/lan.toml"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_sim_args(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Every node runs the real core; time is virtual: links follow the network profile and each node's "
        "CPU follows the cost table (docs/simulator.md). The same arguments give byte-identical logs."
    )
    parser.add_argument("--nodes", type=_positive, default=16, help="nodes in all (default 16)")
    parser.add_argument("--validators", type=_positive, default=4, help="committee size (default 4)")
    parser.add_argument(
        "--full-degree", type=int, default=8, metavar="D", help="connections each full node dials (default 8)"
    )
    parser.add_argument("--payments", type=_positive, default=200, metavar="P", help="payments (default 200)")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, metavar="R", help="open loop: R payments per second (default 10)")
    load.add_argument(
        "--window", type=_positive, metavar="W", help="closed loop: at most W payments in flight"
    )
    parser.add_argument("--accounts", type=_positive, default=64, help="funded accounts paying (default 64)")
    parser.add_argument(
        "--network",
        type=Path,
        default=Path(DEFAULT_NETWORK),
        metavar="FILE",
        help=f"profile ({DEFAULT_NETWORK})",
    )
    parser.add_argument(
        "--cores",
        type=_positive,
        metavar="C",
        help="the nodes share C cores (a local cluster on one machine); default: one core per node",
    )
    parser.add_argument(
        "--costs", type=Path, metavar="FILE", help="cost table (from `p2pnode sim calibrate`)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="write DIR/logs/node-*.log and DIR/summary.json"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of keys, topology, links (default 0)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    sub = parser.add_subparsers(dest="sim_command", metavar="ACTION")
    cal = sub.add_parser("calibrate", help="measure the cost table on this machine")
    cal.add_argument("--out", dest="calibrate_out", type=Path, required=True, metavar="FILE.json")
    cal.add_argument("--json", dest="calibrate_json", action="store_true", help="print the table as JSON")
    cal.add_argument(
        "--fit-settled-per-s",
        type=float,
        metavar="X",
        help="also fit the non-crypto costs so that 4 validators sharing --cores cores (default 2) "
        "saturate at X settled/s, as `p2pnode bench --window 64` measured on a real local cluster",
    )
    cal.add_argument(
        "--fit-light-p50-ms",
        type=float,
        metavar="MS",
        help="also fit the wake-up cost of an idle node so that 4 validators at 5 payments/s have a "
        "client p50 of MS, as `p2pnode bench --rate 5` measured on the same real cluster",
    )
    cal.add_argument("--cores", dest="calibrate_cores", type=_positive, default=2, metavar="C")


def cmd_sim(args: argparse.Namespace) -> int:
    from p2pnode.errors import LocalError
    from p2pnode.sim.engine import SimSpec
    from p2pnode.sim.run import SimRun, render_summary, simulate, stderr_progress

    if args.sim_command == "calibrate":
        from p2pnode.sim.calibrate import calibrate

        table = calibrate(progress=stderr_progress)
        if args.fit_settled_per_s is not None or args.fit_light_p50_ms is not None:
            from p2pnode.sim.calibrate import fit

            table = fit(
                table,
                settled_per_s=args.fit_settled_per_s,
                light_p50_ms_target=args.fit_light_p50_ms,
                cores=args.calibrate_cores,
                progress=stderr_progress,
            )
        table.save(args.calibrate_out)
        print(json.dumps(table.to_json(), indent=2) if args.calibrate_json else f"wrote {args.calibrate_out}")
        return 0
    if args.validators > args.nodes:
        raise LocalError(f"--validators {args.validators} is more than --nodes {args.nodes}")
    if args.full_degree < 1:
        raise LocalError("--full-degree must be at least 1")
    spec = SimSpec(
        nodes=args.nodes,
        validators=args.validators,
        full_degree=args.full_degree,
        payments=args.payments,
        rate=None if args.window is not None else (args.rate if args.rate is not None else 10.0),
        window=args.window or 64,
        accounts=args.accounts,
        seed=args.seed,
        cores=args.cores,
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    summary = simulate(
        SimRun(spec=spec, network=args.network, out=args.out, costs=args.costs),
        progress=None if args.json else stderr_progress,
    )
    print(json.dumps(summary, indent=2) if args.json else render_summary(summary))
    ok = summary["applied_everywhere"] == summary["payments"] and summary["roots_equal"]
    return 0 if ok else 1
