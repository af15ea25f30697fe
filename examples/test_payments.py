"""A user's integration test, written against docs/testing.md only.

Four validators in this process under Trio's virtual clock: one payment, both balances, one root.
Run it with ``pytest examples/`` (it needs ``trio_mode = true``, or ``@pytest.mark.trio``).
"""

from __future__ import annotations

import pytest
import trio

from p2pnode.testing import open_memory_cluster

BALANCE = 1_000_000_000


async def test_a_payment_settles_and_every_node_agrees(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=2) as cluster:
        receipt = await cluster.pay(0, 1, 250)
        assert receipt.settled and receipt.seq == 0
        assert await cluster.balance(0) == BALANCE - 250
        assert await cluster.balance(1, via="node-3") == BALANCE + 250
        root = await cluster.wait_converged()
        for node in cluster.nodes:
            assert (await cluster.status(node)).root == root.hex()


@pytest.mark.p2pnode_cluster(validators=4, accounts=3)
async def test_a_crashed_validator_catches_up(p2pnode_memory_cluster, autojump_clock) -> None:  # type: ignore[no-untyped-def]
    cluster = p2pnode_memory_cluster
    await cluster.kill("node-3")
    for k in range(3):
        assert (await cluster.pay(k, (k + 1) % 3, 10 + k)).settled  # a quorum of 3 still settles
    await cluster.restart("node-3")
    with trio.fail_after(30):
        root = await cluster.wait_converged()
    assert (await cluster.status("node-3")).root == root.hex()
