"""``p2pnode pay``: one transparent payment, returning once it is settled at the node it was sent to.

``--timeout`` bounds the whole command: connecting, the status and account requests, waiting for the
account's lock (another command paying from the same account file) and for settlement
(:mod:`p2pnode.cli.failures`). The payment itself is :func:`p2pnode.client.pay`; failures are printed
by the dispatcher in :mod:`p2pnode.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from p2pnode.cli.failures import connect, run_within
from p2pnode.client import Progress, Receipt, Wallet, check_amount, parse_recipient, pay


def notify(line: str) -> None:
    """A progress line for the user: on stderr, so that stdout stays one result (or JSON object)."""
    print(f"p2pnode: {line}", file=sys.stderr, flush=True)


def cmd_pay(args: argparse.Namespace) -> int:
    wallet = Wallet.from_file(Path(args.from_))
    to = parse_recipient(args.to)
    amount = check_amount(args.amount)

    async def go(progress: Progress) -> Receipt:
        async with await connect(args.node, progress) as client:
            return await pay(client, wallet, to, amount, notify=notify)

    receipt = run_within(args.timeout, go)
    if args.json:
        doc: dict[str, object] = {
            "settled": True,
            "tx": receipt.tx.hex(),
            "seq": receipt.seq,
            "settlement_ms": round(receipt.seconds * 1000, 3),
            "balance": receipt.balance,
            "root": receipt.root.hex(),
        }
        if receipt.completed is not None:
            doc["completed_earlier"] = {"seq": receipt.completed[0], "tx": receipt.completed[1].hex()}
        print(json.dumps(doc))
    else:
        print(
            f"settled tx {receipt.tx.hex()} seq {receipt.seq} in {receipt.seconds * 1000:.1f} ms; "
            f"new balance {receipt.balance}"
        )
    return 0
