"""Wallet commands for the shielded pool: ``shield``, ``zpay``, ``unshield``, ``notes``.

Parsing and printing only: the operations are :mod:`p2pnode.client.shielded` (keys derived from an
account file, one prover helper per command, notes found by scanning the node's applied outputs).
Each command returns once the node it talks to has applied its certificate. ``--timeout`` bounds the
whole command, starting the prover and proving included (:mod:`p2pnode.cli.failures`).

A recipient is a 64-byte shielded address (128 hex digits), or an account file whose shielded
address is used.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from p2pnode.cli.failures import connect, run_within
from p2pnode.cli.pay import notify
from p2pnode.client import Client, Progress, Receipt, Wallet, check_amount, parse_recipient
from p2pnode.client.progress import PROVE
from p2pnode.client.shielded import (
    notes,
    open_prover,
    shield,
    shielded_address,
    shielded_keys,
    unshield,
    zpay,
)
from p2pnode.zk.notes import Note
from p2pnode.zk.paths import add_zk_path_args, zk_paths_from_args
from p2pnode.zk.prover import Prover


def _report(args: argparse.Namespace, what: str, receipt: Receipt, **extra: Any) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    "settled": True,
                    "tx": receipt.tx.hex(),
                    "settlement_ms": round(receipt.seconds * 1000, 3),
                    "prove_ms": round(receipt.prove_seconds * 1000, 1),
                    **extra,
                }
            )
        )
    else:
        more = "".join(f"; {k.replace('_', ' ')} {v}" for k, v in extra.items())
        print(
            f"{what}: settled tx {receipt.tx.hex()} in {receipt.seconds * 1000:.1f} ms "
            f"(proof {receipt.prove_seconds * 1000:.0f} ms){more}"
        )


def _run(args: argparse.Namespace, body: Callable[[Client, Prover], Awaitable[Receipt]]) -> Receipt:
    """Open the prover and a client, and run ``body`` under the command's deadline."""

    async def go(progress: Progress) -> Receipt:
        with progress.step(PROVE, "prover"):
            prover = open_prover(zk_paths_from_args(args))
        with prover:
            async with await connect(args.node, progress) as client:
                return await body(client, prover)

    return run_within(args.timeout, go)


def cmd_shield(args: argparse.Namespace) -> int:
    wallet = Wallet.from_file(Path(args.from_))
    amount = check_amount(args.amount)

    async def body(client: Client, prover: Prover) -> Receipt:
        to = shielded_address(args.to, prover) if args.to else None
        return await shield(client, wallet, prover, amount, to, notify=notify)

    receipt = _run(args, body)
    _report(args, "shield", receipt, transparent_balance=receipt.balance)
    return 0


def cmd_zpay(args: argparse.Namespace) -> int:
    wallet = Wallet.from_file(Path(args.from_))
    amount = check_amount(args.amount)

    async def body(client: Client, prover: Prover) -> Receipt:
        return await zpay(client, wallet, prover, shielded_address(args.to, prover), amount, notify=notify)

    _report(args, "zpay", _run(args, body))
    return 0


def cmd_unshield(args: argparse.Namespace) -> int:
    wallet = Wallet.from_file(Path(args.from_))
    to = parse_recipient(args.to)
    amount = check_amount(args.amount)

    async def body(client: Client, prover: Prover) -> Receipt:
        return await unshield(client, wallet, prover, to, amount, notify=notify)

    receipt = _run(args, body)
    _report(args, "unshield", receipt, recipient_balance=receipt.balance)
    return 0


def cmd_notes(args: argparse.Namespace) -> int:
    wallet = Wallet.from_file(Path(args.key))

    async def go(progress: Progress) -> tuple[bytes, list[tuple[Note, bool]]]:
        with progress.step(PROVE, "prover"):
            prover = open_prover(zk_paths_from_args(args))
        with prover:
            async with await connect(args.node, progress) as client:
                return shielded_keys(wallet.key, prover).address, await notes(client, wallet, prover)

    address, found = run_within(args.timeout, go)
    unspent = sum(n.value for n, s in found if not s)
    if args.json:
        print(
            json.dumps(
                {
                    "address": address.hex(),
                    "notes": [
                        {"commitment": n.commitment_bytes.hex(), "value": n.value, "spent": s}
                        for n, s in found
                    ],
                    "unspent_total": unspent,
                }
            )
        )
    else:
        print(f"shielded address {address.hex()}")
        for n, s in found:
            print(
                f"  note {n.commitment_bytes.hex()[:16]}  value {n.value:>12}  {'spent' if s else 'unspent'}"
            )
        print(f"  {len(found)} notes, unspent total {unspent}")
    return 0


def add_shielded_args(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--node", required=True, metavar="HOST:PORT", help="node to submit to")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            metavar="S",
            help="seconds the whole command may take, waiting for the account lock and settlement included "
            "(default 60)",
        )
        p.set_defaults(failure_doc={"settled": False})
        add_zk_path_args(p)

    p = sub.add_parser("shield", help="move funds from a transparent account into a shielded note")
    common(p)
    p.add_argument("--from", dest="from_", required=True, metavar="ACCOUNTFILE", help="paying account file")
    p.add_argument("--amount", type=int, required=True, help="amount to shield")
    p.add_argument("--to", metavar="ZADDR_OR_ACCOUNTFILE", help="note owner (default: the payer's own)")
    p.set_defaults(handler=cmd_shield)

    p = sub.add_parser("zpay", help="pay from your shielded notes to a shielded address")
    common(p)
    p.add_argument("--from", dest="from_", required=True, metavar="ACCOUNTFILE", help="wallet's account file")
    p.add_argument("--to", required=True, metavar="ZADDR_OR_ACCOUNTFILE", help="recipient")
    p.add_argument("--amount", type=int, required=True, help="amount to pay")
    p.set_defaults(handler=cmd_zpay)

    p = sub.add_parser("unshield", help="pay from your shielded notes to a transparent account")
    common(p)
    p.add_argument("--from", dest="from_", required=True, metavar="ACCOUNTFILE", help="wallet's account file")
    p.add_argument("--to", required=True, metavar="ADDR_OR_ACCOUNTFILE", help="transparent recipient")
    p.add_argument("--amount", type=int, required=True, help="amount to unshield")
    p.set_defaults(handler=cmd_unshield)

    p = sub.add_parser("notes", help="list the shielded notes a key can open")
    p.add_argument("--node", required=True, metavar="HOST:PORT", help="node to scan")
    p.add_argument("--key", required=True, metavar="ACCOUNTFILE", help="wallet's account file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds the command may take")
    add_zk_path_args(p)
    p.set_defaults(handler=cmd_notes, failure_doc={})
