"""``p2pnode latency``: arguments of :func:`p2pnode.tools.latency.run_latency`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_latency_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", nargs="+", metavar="LOG", type=Path, help="node log files (JSON lines)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument(
        "--plot", metavar="FILE.png", type=Path, help="also draw the latency figure to FILE.png"
    )


def cmd_latency(args: argparse.Namespace) -> int:
    """Analyze the given logs; 0 on success, 2 if no log could be read or the plot could not be made."""
    from p2pnode.tools.latency import LatencyRun, run_latency

    return run_latency(LatencyRun(logs=tuple(args.logs), json=args.json, plot=args.plot))
