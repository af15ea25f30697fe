"""Anti-entropy: nodes that were cut off, or start late, reach the same root."""

from __future__ import annotations

import random

import trio

from p2pnode.net.node import Node
from p2pnode.store import MemoryStore
from tests.integration.harness import mem_cluster, node_config


async def test_partitioned_node_catches_up_after_heal(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(4, full_nodes=1, accounts=4, bootstrap_all=True) as c:
        await c.wait_connected(4)
        for i in range(4):
            c.network.cut("n4", f"n{i}")
        await trio.sleep(1)
        for k in range(8):
            assert (await c.pay(k % 4, src=k % 4, dst=(k + 1) % 4, amount=5)).accepted
        await c.wait_converged(nodes=[0, 1, 2, 3], applied=8)
        assert c.nodes[4].core.ledger.applied_count() == 0
        c.network.heal()
        await c.wait_converged(applied=8)


async def test_late_full_node_syncs_history(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(4, accounts=4) as c:
        await c.wait_connected(3)
        for k in range(12):
            assert (await c.pay(k % 4, src=k % 4, dst=(k + 2) % 4, amount=3 + k)).accepted
        late = Node(
            node_config(9, ["n2:7000"]),
            c.node_keys[0].__class__.generate(),
            c.genesis,
            store=MemoryStore(),
            transport=c.network.transport("n9"),
            rng=random.Random(9),
        )
        c.nodes.append(late)
        assert c.nursery is not None
        await c.nursery.start(late.run)
        await c.wait_converged(applied=12)
        assert late.role == "full"


async def test_restarted_validator_keeps_state_and_locks(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(4, accounts=4) as c:
        await c.wait_connected(3)
        for k in range(4):
            assert (await c.pay(0, src=k, dst=(k + 1) % 4, amount=2)).accepted
        await c.wait_converged(applied=4)
        victim = c.nodes[3]
        store = c.stores[3]
        victim.stop()
        await trio.sleep(1)
        for k in range(4):
            assert (await c.pay(0, src=k, dst=(k + 3) % 4, amount=1)).accepted
        reborn = Node(
            node_config(3, ["n0:7000"]),
            c.node_keys[3],
            c.genesis,
            store=store,
            transport=c.network.transport("n3"),
            rng=random.Random(33),
        )
        assert c.nursery is not None
        await c.nursery.start(reborn.run)
        assert reborn.core.ledger.applied_count() == 4  # restored from its store before any sync
        c.nodes[3] = reborn
        await c.wait_converged(applied=8)
