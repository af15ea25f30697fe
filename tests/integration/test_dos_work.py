"""Proof verification budgets on a 4-validator in-memory cluster (virtual clock): an attacker peer
with a fresh key floods well-formed invalid proofs, a client connection does the same through the
client port; both get a bounded number verified and honest payments are verified right after."""

from __future__ import annotations

import trio

from p2pnode.client.errors import ConnectionLost
from p2pnode.core.node import PENALTY_LIMIT
from p2pnode.core.payments import make_order
from p2pnode.crypto import NodeKey
from p2pnode.errors import RemoteError
from p2pnode.net.conn import FramedStream, handshake
from p2pnode.testing import MemoryCluster, open_memory_cluster
from p2pnode.wire.messages import Gossip, Order, SubmitOrder, SubmitReply
from p2pnode.wire.types import ChainId

FLOOD = 300


def bad_orders(c: MemoryCluster, n: int) -> list[Order]:
    """Well-formed orders of account 1 whose proofs are another transfer's (they do not verify)."""
    key, to = c.accounts[1].key, c.accounts[0].address
    stolen = make_order(key, c.chain_id, to, 10**9, 0).proof
    out = []
    for amount in range(1, n + 1):
        good = make_order(key, c.chain_id, to, amount, 0)
        out.append(Order(transfer=good.transfer, sender_key=good.sender_key, proof=stolen))
    return out


async def test_a_peer_flooding_bad_proofs_is_cut_and_its_queued_rest_dropped(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_memory_cluster(validators=4, accounts=2, seed=1) as c:
        await c.wait_ready(peers=3)
        victim = c.driver(1)
        batch_max = victim.cfg.verify.batch_max
        orders = bad_orders(c, FLOOD)
        host, port = c.node(1).address.rsplit(":", 1)
        stream = await c.network.transport("evil").connect(host, int(port))
        conn = FramedStream(stream, 1 << 20)
        with trio.fail_after(5):
            await handshake(conn, NodeKey.generate(), ChainId(c.chain_id), 0, "full")
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
        assert victim.core.verify_stats["bad_proofs"] < FLOOD // 4
        assert not victim.core.verifying
        assert (await c.pay(0, 1, 5, via=1)).settled


async def test_an_honest_proof_is_not_verified_behind_a_flood(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=2, seed=1) as c:
        await c.wait_ready(peers=3)
        victim = c.driver(1)
        host, port = c.node(1).address.rsplit(":", 1)
        stream = await c.network.transport("evil").connect(host, int(port))
        conn = FramedStream(stream, 1 << 20)
        await handshake(conn, NodeKey.generate(), ChainId(c.chain_id), 0, "full")
        before = victim.verifier.proofs
        try:
            for o in bad_orders(c, FLOOD):
                await conn.send(Gossip(data=o.encode(), hops=1))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # banned mid-flood
        honest = make_order(c.accounts[0].key, c.chain_id, c.accounts[1].address, 7, 0)
        async with c.client(1) as client:
            reply = await client.call(SubmitOrder(order=honest))  # queued behind the flood
        assert isinstance(reply, SubmitReply) and reply.accepted
        # Verified after at most the first attacker batch and the batch its bisection put it in.
        assert victim.verifier.proofs - before <= 2 * victim.cfg.verify.batch_max + 1


async def test_a_client_flooding_bad_proofs_is_cut(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=2, seed=1) as c:
        await c.wait_ready(peers=3)
        victim = c.driver(1)
        before = victim.verifier.proofs
        refused = 0
        cut = False
        async with c.client(1) as client:
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
        assert (await c.pay(0, 1, 5, via=1)).settled  # a new connection is served
