"""``p2pnode latency``: arguments of :func:`p2pnode.tools.latency.run_latency`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = (
    "A payment belongs to a run or a time window when it was submitted inside it (its earliest "
    "order_submitted, else order_received); all its events count. --compare marks with ~ the deltas "
    "inside the runs' own spread: the two runs' 95% order-statistic intervals of that percentile overlap."
)


def add_latency_args(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("logs", nargs="*", metavar="LOG", type=Path, help="node log files (JSON lines)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument(
        "--plot", metavar="FILE.png", type=Path, help="also draw the latency figure to FILE.png"
    )
    parser.add_argument(
        "--trace",
        metavar="FILE.json",
        type=Path,
        help="also write the payments as Chrome trace-event JSON (for ui.perfetto.dev or chrome://tracing)",
    )
    parser.add_argument(
        "--trace-html",
        metavar="FILE.html",
        type=Path,
        help="also write a self-contained HTML timeline of 250 ms of that trace, for offline viewing",
    )
    parser.add_argument("--run", metavar="ID", help="only the payments of this bench run (its run_id)")
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="only payments submitted at or after TIME (ISO 8601, UTC unless given; or ns)",
    )
    parser.add_argument("--until", metavar="TIME", help="only payments submitted at or before TIME")
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.json", "B.json"),
        type=Path,
        help="compare two latency --json (or bench --json) documents instead of reading logs",
    )


def cmd_latency(args: argparse.Namespace) -> int:
    """Analyze the given logs (or compare two reports); 0 on success, 2 on usage or input errors."""
    from p2pnode.errors import LocalError
    from p2pnode.tools.latency import LatencyRun, run_latency
    from p2pnode.tools.latency_select import parse_time

    if args.compare is None and not args.logs:
        print("p2pnode latency: give log files, or --compare A.json B.json", file=sys.stderr)
        return 2
    if args.compare is not None and args.logs:
        print("p2pnode latency: --compare takes two reports, not log files", file=sys.stderr)
        return 2
    try:
        since = None if args.since is None else parse_time(args.since)
        until = None if args.until is None else parse_time(args.until)
    except LocalError as exc:
        print(f"p2pnode latency: {exc}", file=sys.stderr)
        return 2
    return run_latency(
        LatencyRun(
            logs=tuple(args.logs),
            json=args.json,
            plot=args.plot,
            trace=args.trace,
            trace_html=args.trace_html,
            run=args.run,
            since_ns=since,
            until_ns=until,
            compare=None if args.compare is None else (args.compare[0], args.compare[1]),
        )
    )
