"""Many nodes on the in-memory network under the virtual clock: payments settle, roots converge."""

from __future__ import annotations

import trio

from tests.integration.harness import BALANCE, mem_cluster


async def test_four_validators_settle_and_converge(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(4, accounts=4) as c:
        await c.wait_connected(3)
        for k in range(6):
            reply = await c.pay(k % 4, src=k % 4, dst=(k + 1) % 4, amount=100 + k)
            assert reply.accepted, reply.error
        await c.wait_converged(applied=6)
        total = sum([await c.balance(0, a) for a in range(4)])
        assert total == 4 * BALANCE
        assert await c.balance(3, 0) == BALANCE - 100 - 104 + 103


async def test_seven_validators_and_full_nodes(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(7, full_nodes=3, accounts=6) as c:
        await c.wait_connected(4)
        for k in range(10):
            reply = await c.pay(k % 10, src=k % 6, dst=(k + 2) % 6, amount=7 * (k + 1))
            assert reply.accepted, reply.error
        await c.wait_converged(applied=10)
        balances = [await c.balance(9, a) for a in range(6)]
        assert sum(balances) == 6 * BALANCE
        assert balances[0] == BALANCE - 7 - 49 + 35  # paid k=0 and k=6, received k=4


async def test_refusals_are_readable_and_change_nothing(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(4, accounts=2) as c:
        await c.wait_connected(3)
        reply = await c.pay(1, src=0, dst=1, amount=BALANCE + 1)
        assert not reply.accepted
        assert reply.error == f"insufficient funds: balance {BALANCE}, amount {BALANCE + 1}"
        ok = await c.pay(2, src=0, dst=1, amount=5)
        assert ok.accepted
        await c.wait_converged(applied=1)


async def test_payer_equivocation_yields_at_most_one_certificate(autojump_clock: trio.abc.Clock) -> None:
    from p2pnode.core.payments import make_order, transfer_digest
    from p2pnode.crypto import address_of
    from p2pnode.wire.messages import SubmitOrder

    async with mem_cluster(4, accounts=3) as c:
        await c.wait_connected(3)
        key = c.accounts[0]
        a = make_order(key, c.chain_id, address_of(c.accounts[1].public), 10, 0)
        b = make_order(key, c.chain_id, address_of(c.accounts[2].public), 20, 0)
        async with trio.open_nursery() as n:  # both at once, to different nodes
            n.start_soon(c.call, 0, SubmitOrder(order=a))
            n.start_soon(c.call, 3, SubmitOrder(order=b))
        await trio.sleep(5)
        digests = {transfer_digest(a.transfer), transfer_digest(b.transfer)}
        for node in c.nodes:
            assert len(node.core.settled & digests) <= 1
        applied = {n.core.ledger.applied.get((a.transfer.sender, 0)) for n in c.nodes} - {None}
        assert len(applied) <= 1
        # The account may be stuck (no quorum for either), but other payments still settle.
        assert (await c.pay(1, src=1, dst=2, amount=3)).accepted
        await c.wait_converged()


async def test_byzantine_validators_cannot_break_safety(autojump_clock: trio.abc.Clock) -> None:
    """f = 2 of 7 Byzantine (one votes for conflicting orders, one signs garbage); then f silent."""
    from p2pnode.core.payments import make_order, transfer_digest
    from p2pnode.crypto import address_of
    from p2pnode.wire.messages import SubmitOrder

    async with mem_cluster(7, full_nodes=1, accounts=4, byzantine={0: "equivocate", 1: "bad_signature"}) as c:
        await c.wait_connected(4)
        for k in range(4):
            assert (await c.pay(7, src=k, dst=(k + 1) % 4, amount=11)).accepted
        key = c.accounts[0]
        a = make_order(key, c.chain_id, address_of(c.accounts[1].public), 10, 1)
        b = make_order(key, c.chain_id, address_of(c.accounts[2].public), 20, 1)
        async with trio.open_nursery() as n:
            n.start_soon(c.call, 2, SubmitOrder(order=a))
            n.start_soon(c.call, 5, SubmitOrder(order=b))
        await trio.sleep(5)
        both = {transfer_digest(a.transfer), transfer_digest(b.transfer)}
        certified = set()
        for node in c.nodes:
            certified |= set(node.core.certified) & both
            certified |= node.core.settled & both
        assert len(certified) <= 1
        rejected = sum(n.core.router.stats.invalid for n in c.nodes)
        assert rejected > 0  # garbage signatures were refused, not relayed
        await c.wait_converged()


async def test_silent_validators_do_not_stop_settlement(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(7, accounts=3, byzantine={5: "silent", 6: "silent"}) as c:
        await c.wait_connected(4)
        for k in range(3):
            assert (await c.pay(k, src=k, dst=(k + 1) % 3, amount=9)).accepted
        await c.wait_converged(applied=3)
