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
from typing import Any

import trio

from p2pnode.cli.failures import NodeTimeout, SlotBlocked
from p2pnode.config import parse_hostport
from p2pnode.net.client import request_expect
from p2pnode.wire.messages import StatusReply, StatusRequest

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


async def query_status(host: str, port: int) -> dict[str, Any]:
    """One status request on a fresh connection.

    Error handling: ``OSError`` if the node cannot be reached, :class:`RemoteError` if it answers with
    anything but a ``StatusReply``. The caller bounds the wait (``trio.fail_after``).
    """
    reply = await request_expect(host, port, StatusRequest(), StatusReply)
    return reply.info


def fetch_status(host: str, port: int, timeout: float = 10.0) -> dict[str, Any]:
    """Synchronous :func:`query_status` bounded by ``timeout`` seconds (:class:`NodeTimeout`, a
    LocalError's sibling with exit code 2, on expiry)."""

    async def _run() -> dict[str, Any]:
        with trio.fail_after(timeout):
            return await query_status(host, port)

    try:
        return trio.run(_run)
    except trio.TooSlowError:
        raise NodeTimeout(f"{host}:{port}: no status reply within {timeout:g}s") from None


def blocked_slots(info: dict[str, Any]) -> list[str]:
    """One line per blocked slot the node reports: account, seq, conflicting orders and vote counts."""
    from p2pnode.cli.wallet import describe_blocked, slot_orders

    lines = []
    for slot in info.get("blocked_slots") or []:
        if not isinstance(slot, dict):
            continue
        try:
            sender = bytes.fromhex(str(slot.get("sender", "")))
        except ValueError:
            sender = b""
        seq = slot.get("seq")
        lines.append(describe_blocked(sender, seq if isinstance(seq, int) else -1, "", slot_orders(slot)))
    return lines


def jsonable(value: Any) -> Any:
    """The status value with bytes as hex strings, so that it serializes as JSON."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _scalar(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return " ".join(_scalar(v) for v in value)
    return str(value)


def _lines(key: str, value: Any, width: int, indent: str = "") -> list[str]:
    label = f"{indent}{key}:".ljust(width + 2)
    if isinstance(value, dict) and value:
        inner = max(len(str(k)) for k in value) + len(indent) + 2
        out = [f"{indent}{key}:"]
        for k, v in value.items():
            out += _lines(str(k), v, inner, indent + "  ")
        return out
    if isinstance(value, list | tuple) and value and all(isinstance(v, dict | list | tuple) for v in value):
        # e.g. peers: one line per peer with its id and address.
        out = [f"{indent}{key}: ({len(value)})"]
        out += [f"{indent}  - {_scalar(v)}" for v in value]
        return out
    if isinstance(value, list | tuple):
        return [label + (", ".join(_scalar(v) for v in value) if value else "(none)")]
    return [label + _scalar(value)]


def format_status(info: dict[str, Any]) -> str:
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
    host, port = parse_hostport(args.node, key="--node")
    info = fetch_status(host, port, timeout=args.timeout)
    if args.json:
        print(json.dumps(jsonable(info), sort_keys=True))
    else:
        print(format_status(info))
    blocked = blocked_slots(info)
    # After the normal output (which, with --json, is the one object on stdout): the node answers,
    # but these accounts can never move at these seqs. A refusal-class outcome: exit 1.
    for line in blocked:
        print(f"p2pnode: error: {line}", file=sys.stderr)
    return SlotBlocked.exit_code if blocked else 0
