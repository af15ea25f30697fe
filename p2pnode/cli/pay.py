"""``p2pnode pay``: one transparent payment, returning once it is settled at the node it was sent to."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import trio

from p2pnode.cli.wallet import PaymentRefused, chain_id_of_node, connect, load_account, parse_recipient, pay


def cmd_pay(args: argparse.Namespace) -> int:
    key = load_account(Path(args.from_))
    to = parse_recipient(args.to)
    if args.amount <= 0:
        print("p2pnode: error: --amount must be positive", flush=True)
        return 2

    async def go() -> int:
        async with await connect(args.node) as client:
            chain_id = await chain_id_of_node(client)
            try:
                result = await pay(client, key, chain_id, to, args.amount, args.timeout)
            except PaymentRefused as exc:
                if args.json:
                    print(json.dumps({"settled": False, "error": str(exc)}))
                else:
                    print(f"refused: {exc}")
                return 1
            except trio.TooSlowError:
                print(f"p2pnode: error: not settled within {args.timeout:g}s")
                return 1
        if args.json:
            print(
                json.dumps(
                    {
                        "settled": True,
                        "tx": result.digest.hex(),
                        "seq": result.seq,
                        "settlement_ms": round(result.seconds * 1000, 3),
                        "balance": result.balance,
                        "root": result.root.hex(),
                    }
                )
            )
        else:
            print(
                f"settled tx {result.digest.hex()} seq {result.seq} in {result.seconds * 1000:.1f} ms; "
                f"new balance {result.balance}"
            )
        return 0

    return trio.run(go)
