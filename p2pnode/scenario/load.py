"""The load of a scenario run: payer tasks releasing payments open loop, and equivocating transfers.

See :mod:`p2pnode.scenario.runner` for how a payment is acknowledged and why a retry is the same payment.
"""

from __future__ import annotations

import trio

from p2pnode.client import Client, Refused, SlotBlocked, request
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.errors import RemoteError
from p2pnode.scenario.spec import Step
from p2pnode.scenario.state import NET_ERRORS, REQUEST_TIMEOUT_S, Account, Payment, Run
from p2pnode.wire.messages import AccountReply, GetAccount, Order
from p2pnode.wire.types import Address

__all__ = ["equivocate", "final_payments", "run_load"]


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
                    run.acknowledged(p)
                except SlotBlocked as exc:  # its slot is blocked: it can never settle, no use waiting
                    p.outcome, p.error = "blocked", str(exc.facts.get("blocked") or exc)
                except Refused as exc:
                    p.outcome, p.error = "refused", str(exc)
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


async def _account_at(run: Run, node: str, acct: Account) -> AccountReply | None:
    host, port = run.addr(node)
    try:
        with trio.fail_after(REQUEST_TIMEOUT_S):
            reply = await request(host, port, GetAccount(address=Address(acct.address)))
    except NET_ERRORS:
        return None
    return reply if isinstance(reply, AccountReply) else None


async def final_payment(run: Run, acct: Account) -> tuple[str, str]:
    """One more payment of ``acct`` once the run is over: ``("settled" | "blocked" | "failed", detail)``.

    The payment is the account's transfer at its next seq (the larger of what the load saw and what the
    node says), so an order of the load still in doubt is resubmitted as it was, never replaced.
    Attempts go round-robin over the honest running nodes until one settles or
    ``expect.final_payment_timeout_s`` passes; "blocked" is a node's report that the slot can never
    settle (conflicting orders of the payer itself)."""
    bound = run.scenario.expect.final_payment_timeout_s
    detail = "no attempt finished"
    deadline = trio.current_time() + bound
    turn = acct.index
    with trio.move_on_at(deadline):
        while True:
            targets = run.targets()
            if not targets:
                await trio.sleep(0.2)
                continue
            node = targets[turn % len(targets)]
            turn += 1
            info = await _account_at(run, node, acct)
            if info is not None:
                if info.blocked:
                    return "blocked", f"seq {info.next_seq} at {node}: {info.blocked}"
                acct.next_seq = max(acct.next_seq, info.next_seq)
            seq = acct.next_seq
            to, amount = _transfer_of(run, acct, seq)
            order = make_order(acct.key, run.chain_id, to, amount, seq)
            left = max(0.1, min(run.scenario.load.timeout_s, deadline - trio.current_time()))
            p = await _submit(run, node, order, left, "final", acct.index)
            if p.outcome == "settled":
                acct.next_seq = seq + 1
                return "settled", f"seq {seq} at {node} in {p.seconds:.2f}s"
            if p.outcome == "blocked":
                return "blocked", f"seq {seq} at {node}: {p.error}"
            detail = f"seq {seq} at {node}: {p.outcome} {p.error}".strip()
            await trio.sleep(0.2)
    return "failed", detail


async def final_payments(run: Run, payers: list[Account]) -> dict[str, tuple[str, str]]:
    """:func:`final_payment` for every payer account at once; keyed ``account-<index>``."""
    out: dict[str, tuple[str, str]] = {}

    async def one(acct: Account) -> None:
        out[f"account-{acct.index}"] = await final_payment(run, acct)

    async with trio.open_nursery() as nursery:
        for acct in payers:
            nursery.start_soon(one, acct)
    return dict(sorted(out.items(), key=lambda kv: int(kv[0].split("-")[1])))
