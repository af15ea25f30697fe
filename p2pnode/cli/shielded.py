"""Wallet commands for the shielded pool: ``shield``, ``zpay``, ``unshield``, ``notes``.

Each command derives the wallet's shielded keys from an account file (see :mod:`p2pnode.zk.notes`),
proves with one long-lived Node.js helper (:class:`p2pnode.zk.prover.Prover`) and the circuit keys of
the local development setup (:func:`p2pnode.zk.setup.ensure_circuit_keys`), submits the order to a
node and returns once that node has applied its certificate.

A recipient is a 64-byte shielded address (128 hex digits), or an account file whose shielded
address is used. Which notes a wallet owns is found by scanning every shielded output the node has
applied and opening the memos addressed to it (``p2pnode notes``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import trio

from p2pnode.cli.failures import Budget, InsufficientNotes, as_budget, check_amount
from p2pnode.cli.pay import notify
from p2pnode.cli.wallet import (
    chain_id_of_node,
    complete_pending,
    connect,
    get_account,
    hex_or_account,
    load_account,
    open_account,
    parse_recipient,
    submit_and_wait,
    submit_recorded,
)
from p2pnode.cli.wallet_state import SHIELDED, Pending, WalletState, account_lock, load_state
from p2pnode.core.shielded import shielded_digest
from p2pnode.net.client import Client
from p2pnode.wire.messages import (
    GetNotes,
    NotesReply,
    ShieldedOrder,
    SubmitShielded,
)
from p2pnode.zk.notes import Note, ShieldedKeys, build_shield, build_transfer, build_unshield, scan
from p2pnode.zk.paths import ZkPaths, add_zk_path_args, zk_paths_from_args
from p2pnode.zk.prover import Prover
from p2pnode.zk.setup import ensure_circuit_keys


def open_prover(zk: ZkPaths | None = None) -> Prover:
    """A prover with the circuit keys and toolchain of ``zk`` (default: found as the module
    :mod:`p2pnode.zk.paths` describes)."""
    return Prover.from_dir(ensure_circuit_keys(zk), zk)


def shielded_address(text: str, prover: Prover) -> bytes:
    """A 128-hex-digit shielded address, or an account file (its derived address)."""
    return hex_or_account(
        text,
        64,
        lambda key: ShieldedKeys.from_spending_key(key.to_bytes(), prover).address,
        "128-hex-digit shielded address",
    )


async def fetch_outputs(client: Client, budget: Budget | None = None) -> list[tuple[bytes, bytes, bool]]:
    """Every (commitment, memo, spent) the node has applied, in its order."""
    out: list[tuple[bytes, bytes, bool]] = []
    start = 0
    with (budget or Budget.start(60.0)).waiting(f"notes reply from {client.name}"):
        while True:
            reply = await client.call_expect(GetNotes(start=start, limit=4096), NotesReply)
            out.extend(reply.notes)
            if reply.next >= reply.total or not reply.notes:
                return out
            start = reply.next


async def my_notes(
    client: Client, prover: Prover, keys: ShieldedKeys, budget: Budget | None = None
) -> list[tuple[Note, bool]]:
    outputs = await fetch_outputs(client, budget)
    spent = {c: s for c, _, s in outputs}
    found = await trio.to_thread.run_sync(scan, prover, keys, [(c, m) for c, m, _ in outputs])
    return [(n, spent.get(n.commitment_bytes, False)) for n in found]


def choose(notes: list[tuple[Note, bool]], amount: int) -> list[Note]:
    """At most two unspent notes covering ``amount`` (largest first), or an error saying what there is."""
    unspent = sorted((n for n, s in notes if not s), key=lambda n: n.value, reverse=True)
    if not unspent:
        raise InsufficientNotes("insufficient notes: no unspent notes for this key (shield funds first)")
    picked = unspent[:2]
    if sum(n.value for n in picked) < amount:
        raise InsufficientNotes(
            f"insufficient notes: the two largest unspent notes hold {sum(n.value for n in picked)}, "
            f"amount {amount}"
        )
    if picked[0].value >= amount:
        return picked[:1]
    return picked


async def submit_shielded(
    client: Client, order: ShieldedOrder, timeout: float | Budget
) -> tuple[bytes, float]:
    digest = shielded_digest(order.tx)
    return digest, await submit_and_wait(client, SubmitShielded(order=order), digest, as_budget(timeout))


async def submit_recorded_shielded(
    client: Client,
    account_file: Path,
    state: WalletState,
    order: ShieldedOrder,
    seq: int | None,
    budget: Budget,
) -> tuple[bytes, float]:
    """Record the order as pending in the wallet state, submit it and wait (see ``submit_recorded``)."""
    digest = shielded_digest(order.tx)
    pending = Pending(kind=SHIELDED, seq=seq, digest=digest, order=order.encode())
    _, seconds = await submit_recorded(client, account_file, state, pending, budget)
    return digest, seconds


def _report(
    args: argparse.Namespace, what: str, digest: bytes, seconds: float, prove_s: float, **extra: Any
) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    "settled": True,
                    "tx": digest.hex(),
                    "settlement_ms": round(seconds * 1000, 3),
                    "prove_ms": round(prove_s * 1000, 1),
                    **extra,
                }
            )
        )
    else:
        more = "".join(f"; {k.replace('_', ' ')} {v}" for k, v in extra.items())
        print(
            f"{what}: settled tx {digest.hex()} in {seconds * 1000:.1f} ms "
            f"(proof {prove_s * 1000:.0f} ms){more}"
        )


def cmd_shield(args: argparse.Namespace) -> int:
    account_file = Path(args.from_)
    key = load_account(account_file)
    amount = check_amount(args.amount)

    async def go() -> int:
        budget = Budget.start(args.timeout)
        with open_prover(zk_paths_from_args(args)) as prover:
            keys = ShieldedKeys.from_spending_key(key.to_bytes(), prover)
            to = shielded_address(args.to, prover) if args.to else keys.address
            async with await connect(args.node, budget) as client:
                chain_id = await chain_id_of_node(client, budget)
                async with account_lock(account_file, budget):
                    state = load_state(account_file).for_chain(chain_id)
                    acct = await open_account(client, key.address, budget)
                    state, completed = await complete_pending(
                        client, account_file, state, acct.next_seq, budget, notify
                    )
                    if completed is not None:
                        acct = await open_account(client, key.address, budget)
                    seq = max(acct.next_seq, state.next_seq)
                    t0 = time.perf_counter()
                    order = await trio.to_thread.run_sync(
                        build_shield, prover, keys, key, chain_id, seq, amount, to
                    )
                    prove_s = time.perf_counter() - t0
                    digest, seconds = await submit_recorded_shielded(
                        client, account_file, state, order, seq, budget
                    )
                after = await get_account(client, key.address, budget)
        _report(args, "shield", digest, seconds, prove_s, transparent_balance=after.balance)
        return 0

    return trio.run(go)


def _spend(args: argparse.Namespace, what: str, build: Any, to_transparent: bytes | None = None) -> int:
    """Spend from the wallet's notes: pick notes covering ``args.amount``, prove with
    ``build(prover, keys, chain_id, inputs)``, submit and wait; report the recipient's balance when
    the payment leaves the pool. The account's lock is held throughout, so that two spends from one
    wallet never pick the same notes."""
    account_file = Path(args.from_)
    key = load_account(account_file)
    check_amount(args.amount)

    async def go() -> int:
        budget = Budget.start(args.timeout)
        extra: dict[str, Any] = {}
        with open_prover(zk_paths_from_args(args)) as prover:
            keys = ShieldedKeys.from_spending_key(key.to_bytes(), prover)
            async with await connect(args.node, budget) as client:
                chain_id = await chain_id_of_node(client, budget)
                async with account_lock(account_file, budget):
                    state = load_state(account_file).for_chain(chain_id)
                    acct = await get_account(client, key.address, budget)
                    state, _ = await complete_pending(
                        client, account_file, state, acct.next_seq, budget, notify
                    )
                    inputs = choose(await my_notes(client, prover, keys, budget), args.amount)
                    t0 = time.perf_counter()
                    order = await trio.to_thread.run_sync(build, prover, keys, chain_id, inputs)
                    prove_s = time.perf_counter() - t0
                    digest, seconds = await submit_recorded_shielded(
                        client, account_file, state, order, None, budget
                    )
                if to_transparent is not None:
                    after = await get_account(client, to_transparent, budget)
                    extra["recipient_balance"] = after.balance
        _report(args, what, digest, seconds, prove_s, **extra)
        return 0

    return trio.run(go)


def cmd_zpay(args: argparse.Namespace) -> int:
    def build(prover: Prover, keys: ShieldedKeys, chain_id: bytes, inputs: list[Note]) -> ShieldedOrder:
        return build_transfer(
            prover, keys, chain_id, inputs, [(shielded_address(args.to, prover), args.amount)]
        )

    return _spend(args, "zpay", build)


def cmd_unshield(args: argparse.Namespace) -> int:
    to = parse_recipient(args.to)

    def build(prover: Prover, keys: ShieldedKeys, chain_id: bytes, inputs: list[Note]) -> ShieldedOrder:
        return build_unshield(prover, keys, chain_id, inputs, to, args.amount)

    return _spend(args, "unshield", build, to_transparent=to)


def cmd_notes(args: argparse.Namespace) -> int:
    key = load_account(Path(args.key))

    async def go() -> int:
        with open_prover(zk_paths_from_args(args)) as prover:
            keys = ShieldedKeys.from_spending_key(key.to_bytes(), prover)
            async with await connect(args.node, Budget.start(args.timeout)) as client:
                notes = await my_notes(client, prover, keys, Budget.start(args.timeout))
        unspent = sum(n.value for n, s in notes if not s)
        if args.json:
            print(
                json.dumps(
                    {
                        "address": keys.address.hex(),
                        "notes": [
                            {"commitment": n.commitment_bytes.hex(), "value": n.value, "spent": s}
                            for n, s in notes
                        ],
                        "unspent_total": unspent,
                    }
                )
            )
        else:
            print(f"shielded address {keys.address.hex()}")
            for n, s in notes:
                print(
                    f"  note {n.commitment_bytes.hex()[:16]}  value {n.value:>12}  "
                    f"{'spent' if s else 'unspent'}"
                )
            print(f"  {len(notes)} notes, unspent total {unspent}")
        return 0

    return trio.run(go)


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
