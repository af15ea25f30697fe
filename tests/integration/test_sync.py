"""Anti-entropy: nodes that were cut off, or start late, reach the same root."""

from __future__ import annotations

import trio

from p2pnode.testing import open_memory_cluster


async def test_partitioned_node_catches_up_after_heal(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, full_nodes=1, accounts=4, seed=1, bootstrap_all=True) as c:
        await c.wait_ready(peers=4)
        await c.partition([4], [0, 1, 2, 3])
        await trio.sleep(1)
        for k in range(8):
            assert (await c.pay(k % 4, (k + 1) % 4, 5, via=k % 4)).settled
        await c.wait_converged(nodes=[0, 1, 2, 3], applied=8)
        assert c.driver(4).core.ledger.applied_count() == 0
        await c.heal()
        await c.wait_converged(applied=8)


async def test_late_full_node_syncs_history(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=4, seed=1, bootstrap_all=False) as c:
        await c.wait_ready(peers=3)
        for k in range(12):
            assert (await c.pay(k % 4, (k + 2) % 4, 3 + k, via=k % 4)).settled
        late = await c.join(bootstrap=[2])
        await c.wait_converged(applied=12)
        assert late.role == "full" and c.driver(late).role == "full"


async def test_restarted_validator_keeps_state_and_locks(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=4, seed=1, bootstrap_all=False) as c:
        await c.wait_ready(peers=3)
        for k in range(4):
            assert (await c.pay(k, (k + 1) % 4, 2, via=0)).settled
        await c.wait_converged(applied=4)
        await c.kill(3)
        await trio.sleep(1)
        for k in range(4):
            assert (await c.pay(k, (k + 3) % 4, 1, via=0)).settled
        await c.start(3)  # node 3 bootstraps from node 0 (its config), as before the crash
        assert c.driver(3).core.ledger.applied_count() == 4  # restored from its store before any sync
        await c.wait_converged(applied=8)
