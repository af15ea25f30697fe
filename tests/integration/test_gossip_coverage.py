"""One message from one node of 100 reaches all 100; duplicates and hop counts are measured.

The committee is absent (its validators never run), so the order is the only gossiped message and
every node's gossip counters describe exactly its spread.
"""

from __future__ import annotations

import statistics

import structlog
import trio

from p2pnode.core.payments import make_order, proof_key, transfer_digest
from p2pnode.testing import open_memory_cluster
from p2pnode.wire.messages import SubmitOrder, SubmitReply

N = 100


async def test_one_message_reaches_all_100_nodes(autojump_clock: trio.abc.Clock) -> None:
    with structlog.testing.capture_logs() as events:
        # Anti-entropy (which re-pushes orders still uncertified) is slowed down so that the counts
        # describe gossip alone.
        # The topology is a bootstrap chain (every node knows only node 0; bootstrap_all=False): the
        # rest of each node's peers come from peer exchange.
        config = {"sync": {"interval_ms": 600_000}}
        async with open_memory_cluster(
            validators=0,
            full_nodes=N,
            accounts=2,
            absent_validators=4,
            seed=1,
            bootstrap_all=False,
            config=config,
        ) as c:
            await c.wait_ready(peers=8)
            cores = [c.driver(n).core for n in c.nodes]
            before = [core.router.stats.received for core in cores]
            order = make_order(c.account(0).key, c.chain_id, c.account(1).address, 1, 0)
            digest = transfer_digest(order.transfer)
            reply = await c.call(17, SubmitOrder(order=order))
            assert isinstance(reply, SubmitReply) and reply.accepted
            pkey = proof_key(digest, order)
            while sum(1 for core in cores if core.proofs.get(pkey)) < N:
                await trio.sleep(0.05)
            await trio.sleep(2)  # let in-flight copies land (virtual time) before counting
            copies = [core.router.stats.received - b for core, b in zip(cores, before, strict=True)]
    hops = [e["hops"] for e in events if e["event"] == "order_received" and e["tx"] == digest.hex()]
    assert len(hops) == N  # every node received it, and logged it exactly once
    # The origin got it from the client, not from gossip; every other node got >= 1 copy.
    assert sum(1 for x in copies if x == 0) <= 1
    duplicates = statistics.mean(max(0, x - 1) for x in copies)
    print(
        f"mean duplicate copies per node: {duplicates:.2f}; hops min/median/max: "
        f"{min(hops)}/{statistics.median(hops)}/{max(hops)}"
    )
    assert duplicates < 2.0
    assert max(hops) <= 12
