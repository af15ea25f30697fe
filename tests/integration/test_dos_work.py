"""Proof verification budgets on a 4-validator in-memory cluster (virtual clock): an attacker peer
with a fresh key floods well-formed invalid proofs, a client connection does the same through the
client port; both get a bounded number verified and honest payments are verified right after."""

from __future__ import annotations

import trio

from p2pnode.client import Client
from p2pnode.client.errors import ConnectionLost
from p2pnode.core.node import PENALTY_LIMIT
from p2pnode.core.payments import make_order
from p2pnode.crypto import NodeKey, address_of
from p2pnode.errors import RemoteError
from p2pnode.net.conn import FramedStream, handshake
from p2pnode.wire.messages import Gossip, Order, SubmitOrder, SubmitReply
from tests.integration.harness import MemCluster, mem_cluster

FLOOD = 300


def bad_orders(c: MemCluster, n: int) -> list[Order]:
    """Well-formed orders of account 1 whose proofs are another transfer's (they do not verify)."""
    key, to = c.accounts[1], address_of(c.accounts[0].public)
    stolen = make_order(key, c.chain_id, to, 10**9, 0).proof
    out = []
    for amount in range(1, n + 1):
        good = make_order(key, c.chain_id, to, amount, 0)
        out.append(Order(transfer=good.transfer, sender_key=good.sender_key, proof=stolen))
    return out


async def test_a_peer_flooding_bad_proofs_is_cut_and_its_queued_rest_dropped(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with mem_cluster(4, accounts=2) as c:
        await c.wait_connected(3)
        victim = c.nodes[1]
        batch_max = victim.cfg.verify.batch_max
        orders = bad_orders(c, FLOOD)
        stream = await c.network.transport("evil").connect("n1", 7000)
        conn = FramedStream(stream, 1 << 20)
        with trio.fail_after(5):
            await handshake(conn, NodeKey.generate(), c.chain_id, 0, "full")
        before = victim.verifier.proofs
        with trio.move_on_after(10):
            try:
                for o in orders:
                    await conn.send(Gossip(data=o.encode(), hops=1))
                while True:
                    await conn.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteError):
                pass  # the victim closes the connection: that is the point
        flood_verified = victim.verifier.proofs - before
        assert victim.core.verify_stats["bad_proofs"] >= PENALTY_LIMIT
        assert flood_verified <= 2 * batch_max, "a banned peer's queued proofs were still verified"
        assert victim.core.verify_stats["dropped"] + victim.core.verify_stats["budget_ignored"] > 0
        assert not victim.core.verifying
        assert (await c.pay(1, src=0, dst=1, amount=5)).accepted
        await c.wait_converged(applied=1)


async def test_an_honest_proof_is_not_verified_behind_a_flood(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(4, accounts=2) as c:
        await c.wait_connected(3)
        victim = c.nodes[1]
        stream = await c.network.transport("evil").connect("n1", 7000)
        conn = FramedStream(stream, 1 << 20)
        await handshake(conn, NodeKey.generate(), c.chain_id, 0, "full")
        before = victim.verifier.proofs
        try:
            for o in bad_orders(c, FLOOD):
                await conn.send(Gossip(data=o.encode(), hops=1))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # banned mid-flood
        reply = await c.pay(1, src=0, dst=1, amount=7, wait=False)  # queued behind the flood
        assert reply.accepted
        # Verified after at most the first attacker batch and the batch its bisection put it in.
        assert victim.verifier.proofs - before <= 2 * victim.cfg.verify.batch_max + 1


async def test_a_client_flooding_bad_proofs_is_cut(autojump_clock: trio.abc.Clock) -> None:
    async with mem_cluster(4, accounts=2) as c:
        await c.wait_connected(3)
        victim = c.nodes[1]
        before = victim.verifier.proofs
        refused = 0
        cut = False
        async with await c.client(1) as client:
            assert isinstance(client, Client)
            for o in bad_orders(c, 3 * PENALTY_LIMIT):
                try:
                    reply = await client.call(SubmitOrder(order=o))
                except ConnectionLost:
                    cut = True
                    break
                assert isinstance(reply, SubmitReply) and not reply.accepted
                refused += 1
        assert cut and refused == PENALTY_LIMIT
        assert victim.verifier.proofs - before <= PENALTY_LIMIT
        assert (await c.pay(1, src=0, dst=1, amount=5)).accepted  # a new connection is served
