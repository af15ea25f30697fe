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
