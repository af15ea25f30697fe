"""``p2pnode status``: ask one node for its status map and print it.

The status map is whatever the node chooses to report (a flat str-keyed map, see ``StatusReply``).
Known keys are printed first in a fixed order; any other key is printed after them, so a new counter
on the node shows up here without a change to this file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from p2pnode.cli.failures import connect, run_within
from p2pnode.client import NodeStatus, Progress, SlotBlocked, jsonable

# ``query_status`` moved to p2pnode.client; kept importable here until the cluster code moves too.
from p2pnode.client import query_status as query_status

# Display order of the keys a node is expected to report; anything else follows, sorted.
_ORDER = (
    "node",
    "name",
    "node_id",
    "role",
    "ready",
    "version",
    "chain_name",
    "chain_id",
    "listen",
    "pid",
    "uptime_s",
    "peer_count",
    "peers",
    "applied",
    "root",
    "state_root",
    "accounts",
    "held_orders",
    "held_certificates",
    "blocked_slots",
    "pending_orders",
    "verifying",
    "gossip",
    "sync",
    "counters",
)


def _scalar(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return " ".join(_scalar(v) for v in value)
    return str(value)


def _lines(key: str, value: Any, width: int, indent: str = "") -> list[str]:
    label = f"{indent}{key}:".ljust(width + 2)
    if isinstance(value, Mapping) and value:
        inner = max(len(str(k)) for k in value) + len(indent) + 2
        out = [f"{indent}{key}:"]
        for k, v in value.items():
            out += _lines(str(k), v, inner, indent + "  ")
        return out
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, Mapping | list | tuple) for v in value)
    ):
        # e.g. peers: one line per peer with its id and address.
        out = [f"{indent}{key}: ({len(value)})"]
        out += [f"{indent}  - {_scalar(v)}" for v in value]
        return out
    if isinstance(value, list | tuple):
        return [label + (", ".join(_scalar(v) for v in value) if value else "(none)")]
    return [label + _scalar(value)]


def format_status(info: Mapping[str, Any]) -> str:
    """A readable block: one ``key: value`` line per key, nested maps and peer lists indented."""
    keys = [k for k in _ORDER if k in info] + sorted(k for k in info if k not in _ORDER)
    width = max((len(k) for k in keys), default=0)
    lines: list[str] = []
    for key in keys:
        lines += _lines(key, info[key], width)
    return "\n".join(lines)


def add_status_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", required=True, metavar="HOST:PORT", help="the node to ask")
    parser.add_argument("--json", action="store_true", help="print the status map as one JSON object")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds to wait for a reply (default 10)"
    )


def cmd_status(args: argparse.Namespace) -> int:
    async def go(progress: Progress) -> NodeStatus:
        async with await connect(args.node, progress) as client:
            return await client.status()

    status = run_within(args.timeout, go)
    if args.json:
        print(json.dumps(jsonable(status.info), sort_keys=True))
    else:
        print(format_status(status.info))
    # After the normal output (which, with --json, is the one object on stdout): the node answers,
    # but these accounts can never move at these seqs. A refusal-class outcome: exit 1.
    for slot in status.blocked:
        print(f"p2pnode: error: {slot.describe()}", file=sys.stderr)
    return SlotBlocked.exit_code if status.blocked else 0
