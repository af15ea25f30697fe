"""``p2pnode pay``: one transparent payment, returning once it is settled at the node it was sent to.

``--timeout`` bounds the whole command: connecting, the status and account requests, waiting for the
account's lock (another command paying from the same account file) and for settlement. Failures are
typed (:mod:`p2pnode.cli.failures`) and printed by the dispatcher in :mod:`p2pnode.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from p2pnode.cli.failures import Budget, check_amount
from p2pnode.cli.wallet import chain_id_of_node, connect, load_account, parse_recipient, pay


def notify(line: str) -> None:
    """A progress line for the user: on stderr, so that stdout stays one result (or JSON object)."""
    print(f"p2pnode: {line}", file=sys.stderr, flush=True)


def cmd_pay(args: argparse.Namespace) -> int:
    account_file = Path(args.from_)
    key = load_account(account_file)
    to = parse_recipient(args.to)
    amount = check_amount(args.amount)

    async def go() -> int:
        budget = Budget.start(args.timeout)
        async with await connect(args.node, budget) as client:
            chain_id = await chain_id_of_node(client, budget)
            result = await pay(
                client, key, chain_id, to, amount, budget, account_file=account_file, notify=notify
            )
        if args.json:
            doc: dict[str, object] = {
                "settled": True,
                "tx": result.digest.hex(),
                "seq": result.seq,
                "settlement_ms": round(result.seconds * 1000, 3),
                "balance": result.balance,
                "root": result.root.hex(),
            }
            if result.completed is not None:
                doc["completed_earlier"] = {"seq": result.completed[0], "tx": result.completed[1].hex()}
            print(json.dumps(doc))
        else:
            print(
                f"settled tx {result.digest.hex()} seq {result.seq} in {result.seconds * 1000:.1f} ms; "
                f"new balance {result.balance}"
            )
        return 0

    return trio.run(go)
