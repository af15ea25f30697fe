"""The counters ``p2pnode bench`` reads from a node's status: peer frames and bytes received, proofs and
vote signatures verified."""

from __future__ import annotations

import trio

from p2pnode.core.committee import quorum
from p2pnode.testing import open_memory_cluster
from p2pnode.tools.bench_cost import NodeCounts, counts_delta

PAYMENTS = 4


async def test_status_counts_what_each_role_received_and_verified(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(
        validators=4, full_nodes=2, accounts=4, seed=1, balance=10**6, bootstrap_all=False
    ) as c:
        await c.wait_ready(peers=3)
        drivers = {c.driver(n).name: c.driver(n) for n in c.nodes}
        before = {name: NodeCounts.from_status(d.status()) for name, d in drivers.items()}
        for k in range(PAYMENTS):
            assert (await c.pay(k, (k + 1) % 4, 10, via=k % 4)).settled
        await c.wait_converged(applied=PAYMENTS)
        after = {name: NodeCounts.from_status(d.status()) for name, d in drivers.items()}
        for n, d in counts_delta(before, after).items():
            assert d is not None
            role = drivers[n].role
            assert d.rx_frames is not None and d.rx_bytes is not None and d.rx_frames > 0
            assert d.rx_bytes > 8 * d.rx_frames  # a length prefix and a message each
            assert d.proofs is not None and d.signatures is not None
            if role == "validator":
                # Its own check of every order, and every other validator's vote at least.
                assert d.proofs >= PAYMENTS
                assert d.signatures >= PAYMENTS * 3
            else:
                assert d.signatures >= PAYMENTS * quorum(4)
