"""The same kind of test against real node processes (``p2pnode run``) on 127.0.0.1.

Marked slow (it starts four processes); ``make test`` runs it. Every process is stopped when the
block exits, whether the test passes or fails.
"""

from __future__ import annotations

import pytest
import trio

from p2pnode.testing import open_local_cluster

pytestmark = pytest.mark.slow

BALANCE = 1_000_000_000


async def test_payment_through_real_processes() -> None:
    with trio.fail_after(120):
        async with open_local_cluster(validators=4, accounts=2) as cluster:
            receipt = await cluster.pay(0, 1, 250, via="node-1")
            assert receipt.settled
            root = await cluster.wait_converged()
            assert await cluster.balance(1, via="node-2") == BALANCE + 250
            assert (await cluster.status("node-0")).root == root.hex()
