"""The load of a scenario run: payer tasks releasing payments open loop, and equivocating transfers.

See :mod:`p2pnode.scenario.runner` for how a payment is acknowledged and why a retry is the same payment.
"""

from __future__ import annotations

import trio

from p2pnode.client import Client, Refused, request
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.errors import RemoteError
from p2pnode.scenario.spec import Step
from p2pnode.scenario.state import NET_ERRORS, REQUEST_TIMEOUT_S, Account, Payment, Run
from p2pnode.wire.messages import AccountReply, GetAccount, Order
from p2pnode.wire.types import Address

__all__ = ["equivocate", "run_load"]


def _transfer_of(run: Run, acct: Account, seq: int) -> tuple[bytes, int]:
    """The one transfer (recipient, amount) that ``acct`` makes at ``seq``: retries are the same payment."""
    payees = [a for a in run.accounts if a.index != acct.index]
    return payees[seq % len(payees)].address, 1 + seq % 7


def _record_order(run: Run, order: Order) -> str:
    t = order.transfer
    tx = transfer_digest(t).hex()
    run.keys[tx] = (t.sender.hex(), t.seq)
    return tx


async def _submit(run: Run, node: str, order: Order, timeout: float, kind: str, account: int) -> Payment:
    """Submit ``order`` at ``node`` and wait until it settles there (acknowledged) or ``timeout``."""
    tx = _record_order(run, order)
    p = Payment(tx, account, order.transfer.seq, node, kind, round(run.now(), 3))
    run.payments.append(p)
    start = trio.current_time()
    host, port = run.addr(node)
    try:
        with trio.fail_after(timeout):
            async with await Client.connect(host, port) as client:
                try:
                    await client.submit(order)
                    p.accepted = True
                    await client.wait_settled(bytes.fromhex(tx))
                    p.outcome = "settled"
                except Refused as exc:  # refused, or its slot is blocked (then it can never settle)
                    p.outcome, p.error = "refused", str(exc.facts.get("blocked") or exc)
    except trio.TooSlowError:
        p.outcome, p.error = "timeout", f"not settled within {timeout:g}s"
    except (OSError, RemoteError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        p.outcome, p.error = "error", str(exc) or type(exc).__name__
    p.seconds = round(trio.current_time() - start, 4)
    return p


async def _pay_one(run: Run, acct: Account, node: str) -> None:
    try:
        seq = acct.next_seq
        to, amount = _transfer_of(run, acct, seq)
        order = make_order(acct.key, run.chain_id, to, amount, seq)
        p = await _submit(run, node, order, run.scenario.load.timeout_s, "load", acct.index)
        if p.outcome == "settled":
            acct.next_seq = seq + 1
    finally:
        acct.busy = False


async def _payer(run: Run, index: int, accounts: list[Account]) -> None:
    load = run.scenario.load
    if load.rate <= 0 or not accounts:
        return
    interval = load.payers / load.rate
    at = index * interval / load.payers  # stagger the payers
    turn = 0
    async with trio.open_nursery() as nursery:
        while at < load.duration_s:
            await trio.sleep_until(run.t0 + at)
            at += interval
            free = [a for a in accounts if not a.busy]
            node = run.pick_node()
            if not free or node is None:
                run.skipped += 1
                continue
            acct = free[turn % len(free)]
            turn += 1
            acct.busy = True
            nursery.start_soon(_pay_one, run, acct, node)


async def run_load(run: Run, payers: list[Account]) -> None:
    n = run.scenario.load.payers
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(_payer, run, i, payers[i::n])


async def equivocate(run: Run, step: Step, acct: Account) -> None:
    """Sign two different transfers for one seq and submit them at two nodes at once, ``count`` times."""
    a_node, b_node = step.nodes
    for _ in range(step.count):
        seq = acct.next_seq
        for node in (a_node, b_node):  # the account's next seq as the nodes see it
            host, port = run.addr(node)
            try:
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    reply = await request(host, port, GetAccount(address=Address(acct.address)))
                if isinstance(reply, AccountReply):
                    seq = max(seq, reply.next_seq)
            except NET_ERRORS:
                pass
        payees = [a for a in run.accounts if a.index != acct.index]
        orders = [
            make_order(acct.key, run.chain_id, payees[0].address, 1, seq),
            make_order(acct.key, run.chain_id, payees[1].address, 2, seq),
        ]
        results: list[Payment] = []

        async def one(node: str, order: Order, results: list[Payment] = results) -> None:
            results.append(
                await _submit(run, node, order, run.scenario.load.timeout_s, "equivocation", acct.index)
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, a_node, orders[0])
            nursery.start_soon(one, b_node, orders[1])
        outcome = ", ".join(f"{p.node}: {p.outcome}" for p in results)
        run.progress(f"  equivocation seq {seq}: {outcome}")
        acct.next_seq = seq + 1
