"""Payments settle on every node; refusals are readable; payers and validators that cheat break nothing."""

from __future__ import annotations

import pytest
import trio

from p2pnode.client import PaymentRefused
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.testing import open_memory_cluster
from p2pnode.wire.messages import SubmitOrder

BALANCE = 1_000_000
# Every cluster here: seed 1, BALANCE per account, node i > 0 bootstraps from node 0 (bootstrap_all=False).


async def test_four_validators_settle_and_converge(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(
        validators=4, accounts=4, seed=1, balance=BALANCE, bootstrap_all=False
    ) as c:
        await c.wait_ready(peers=3)
        for k in range(6):
            assert (await c.pay(k % 4, (k + 1) % 4, 100 + k, via=k % 4)).settled
        await c.wait_converged(applied=6)
        total = sum([await c.balance(a, via=0) for a in range(4)])
        assert total == 4 * BALANCE
        assert await c.balance(0, via=3) == BALANCE - 100 - 104 + 103


async def test_seven_validators_and_full_nodes(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(
        validators=7, full_nodes=3, accounts=6, seed=1, balance=BALANCE, bootstrap_all=False
    ) as c:
        await c.wait_ready(peers=4)
        for k in range(10):
            assert (await c.pay(k % 6, (k + 2) % 6, 7 * (k + 1), via=k % 10)).settled
        await c.wait_converged(applied=10)
        balances = [await c.balance(a, via=9) for a in range(6)]
        assert sum(balances) == 6 * BALANCE
        assert balances[0] == BALANCE - 7 - 49 + 35  # paid k=0 and k=6, received k=4


async def test_refusals_are_readable_and_change_nothing(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(
        validators=4, accounts=2, seed=1, balance=BALANCE, bootstrap_all=False
    ) as c:
        await c.wait_ready(peers=3)
        with pytest.raises(PaymentRefused) as refused:
            await c.pay(0, 1, BALANCE + 1, via=1)
        assert str(refused.value) == f"insufficient funds: balance {BALANCE}, amount {BALANCE + 1}"
        assert (await c.pay(0, 1, 5, via=2)).settled
        await c.wait_converged(applied=1)


async def test_payer_equivocation_yields_at_most_one_certificate(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(
        validators=4, accounts=3, seed=1, balance=BALANCE, bootstrap_all=False
    ) as c:
        await c.wait_ready(peers=3)
        key = c.account(0).key
        a = make_order(key, c.chain_id, c.account(1).address, 10, 0)
        b = make_order(key, c.chain_id, c.account(2).address, 20, 0)
        async with trio.open_nursery() as n:  # both at once, to different nodes
            n.start_soon(c.call, 0, SubmitOrder(order=a))
            n.start_soon(c.call, 3, SubmitOrder(order=b))
        await trio.sleep(5)
        digests = {transfer_digest(a.transfer), transfer_digest(b.transfer)}
        cores = [c.driver(n).core for n in c.nodes]
        for core in cores:
            assert len(core.settled & digests) <= 1
        applied = {core.ledger.applied.get((a.transfer.sender, 0)) for core in cores} - {None}
        assert len(applied) <= 1
        # The account may be stuck (no quorum for either), but other payments still settle.
        assert (await c.pay(1, 2, 3, via=1)).settled
        await c.wait_converged()


async def test_byzantine_validators_cannot_break_safety(autojump_clock: trio.abc.Clock) -> None:
    """f = 2 of 7 Byzantine (one votes for conflicting orders, one signs garbage); then f silent."""
    byzantine = {0: "equivocate", 1: "bad_signature"}
    async with open_memory_cluster(
        validators=7,
        full_nodes=1,
        accounts=4,
        byzantine=byzantine,
        seed=1,
        balance=BALANCE,
        bootstrap_all=False,
    ) as c:
        await c.wait_ready(peers=4)
        for k in range(4):
            assert (await c.pay(k, (k + 1) % 4, 11, via=7)).settled
        key = c.account(0).key
        a = make_order(key, c.chain_id, c.account(1).address, 10, 1)
        b = make_order(key, c.chain_id, c.account(2).address, 20, 1)
        async with trio.open_nursery() as n:
            n.start_soon(c.call, 2, SubmitOrder(order=a))
            n.start_soon(c.call, 5, SubmitOrder(order=b))
        await trio.sleep(5)
        both = {transfer_digest(a.transfer), transfer_digest(b.transfer)}
        certified = set()
        cores = [c.driver(n).core for n in c.nodes]
        for core in cores:
            certified |= set(core.certified) & both
            certified |= core.settled & both
        assert len(certified) <= 1
        rejected = sum(core.router.stats.invalid for core in cores)
        assert rejected > 0  # garbage signatures were refused, not relayed
        await c.wait_converged()


async def test_silent_validators_do_not_stop_settlement(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(
        validators=7,
        accounts=3,
        byzantine={5: "silent", 6: "silent"},
        seed=1,
        balance=BALANCE,
        bootstrap_all=False,
    ) as c:
        await c.wait_ready(peers=4)
        for k in range(3):
            assert (await c.pay(k, (k + 1) % 3, 9, via=k)).settled
        await c.wait_converged(applied=3)
