"""``p2pnode balance``: one account's balance and next seq, as one node holds them (durable state).

An account whose next seq is blocked (conflicting orders split the validators' votes, so no order
can ever settle at that seq) is reported on stderr with the conflicting orders and exits 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from p2pnode.cli.failures import connect, run_within
from p2pnode.client import Progress, parse_recipient, slot_blocked


def add_balance_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", required=True, metavar="HOST:PORT", help="the node to ask")
    parser.add_argument("account", metavar="ACCOUNT", help="an account file or a 40-hex-digit address")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds the command may take (default 10)"
    )


def cmd_balance(args: argparse.Namespace) -> int:
    address = parse_recipient(args.account, option="ACCOUNT")
    label = args.account if Path(args.account).exists() else address.hex()

    async def go(progress: Progress) -> int:
        async with await connect(args.node, progress) as client:
            acct = await client.account(address)
            doc: dict[str, object] = {
                "address": address.hex(),
                "balance": acct.balance,
                "next_seq": acct.next_seq,
            }
            if args.json and not acct.blocked:
                print(json.dumps({**doc, "blocked": ""}))
            elif not args.json:
                print(f"{label}: balance {acct.balance}, next seq {acct.next_seq}")
            if acct.blocked:
                error = await slot_blocked(client, address, acct.next_seq, acct.blocked)
                if args.json:
                    error.facts.update(doc)  # the dispatcher prints balance and next seq with the error
                raise error
        return 0

    return run_within(args.timeout, go)
