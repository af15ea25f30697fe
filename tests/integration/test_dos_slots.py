"""Peer slots an attacker cannot fill: fresh-key peers doing the real handshake on the in-memory
network, under Trio's virtual clock. Honest peers that delivered useful messages keep their inbound
slots, a committee member always gets one, and outbound slots stay the node's own."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import structlog
import trio
import trio.testing

from p2pnode.crypto import NodeKey
from p2pnode.errors import P2PNodeError
from p2pnode.net.conn import PEER_ERRORS, FramedStream, handshake
from p2pnode.net.peers import short
from p2pnode.testing import MemoryCluster, open_memory_cluster
from p2pnode.testing.memory import _keys
from p2pnode.wire.types import ChainId


def events(logs: Sequence[MutableMapping[str, Any]], event: str, node: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event and e.get("node") == node]


async def connect_as(c: MemoryCluster, victim: int, key: NodeKey) -> trio.abc.Stream:
    """Do the real handshake with ``victim`` as ``key``, from a stream its listener accepted; returns
    the stream, left open (nothing more is read or sent: it holds its slot as long as it is let)."""
    ours, theirs = trio.testing.memory_stream_pair()
    listener_nursery, handler = c.network.listeners[c.node(victim).address]
    listener_nursery.start_soon(handler, theirs, "evil:1")
    conn = FramedStream(ours, 1 << 20)
    with trio.fail_after(5):
        await handshake(conn, key, ChainId(c.chain_id), 0, "full")
    return ours


async def settle(driver: Any, key: NodeKey) -> None:
    """Let the victim decide on this peer (it checks our HelloAuth after we checked its own)."""
    for _ in range(20):
        if key.public in driver.peers:
            return
        await trio.sleep(0.01)


def inbound(driver: Any) -> set[bytes]:
    """Inbound peers holding a slot (an evicted one may take a moment to be torn down)."""
    return {p.node_id for p in driver.peers.values() if p.direction == "in" and not p.close_reason}


async def test_forty_fresh_key_peers_cannot_displace_honest_peers_that_delivered_useful_messages(
    autojump_clock: trio.abc.Clock,
) -> None:
    victim = 0
    # Handshakes of unknown peers unlimited here: this test is about eviction (the rate limit has its own).
    peers = {
        "target": 1,
        "max_outbound": 2,
        "max_inbound": 8,
        "max_connections": 10,
        "handshake_rate": 10_000.0,
        "handshake_burst": 10_000,
    }
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(
            validators=4, full_nodes=2, accounts=4, seed=3, bootstrap_all=False, config={"peers": peers}
        )
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=1)
            v = c.driver(victim)
            honest = {c.driver(i).node_id for i in range(1, 6)}
            with trio.fail_after(30):
                while not honest <= set(v.peers):
                    await trio.sleep(0.1)
            full = {c.driver(4).node_id, c.driver(5).node_id}
            assert full <= inbound(v), "the full nodes dialed the victim: they hold inbound slots"
            # The full nodes originate payments: the victim gets each order first from one of them.
            assert (await c.pay(0, 1, 5, via=4)).settled
            assert (await c.pay(2, 3, 5, via=5)).settled
            await c.wait_converged(applied=2)
            await trio.sleep(1)
            useful = {short(p.node_id): p.useful for p in v.peers.values()}
            assert all(useful[short(nid)] > 0 for nid in full), useful
            attackers = [NodeKey.generate() for _ in range(40)]
            streams = []
            for key in attackers:
                streams.append(await connect_as(c, victim, key))
                await settle(v, key)
                assert len(inbound(v)) <= 8
                assert honest <= set(v.peers), "an honest peer lost its slot"
            held = {k.public for k in attackers} & inbound(v)
            assert len(held) <= 8 - 5
            # Its honest peers stay, and it goes on applying what the others apply.
            assert (await c.pay(1, 0, 2, via=5)).settled
            await c.wait_converged(applied=3)
            assert honest <= set(v.peers)
            n.cancel_scope.cancel()
    evicted = events(logs, "peer_evicted", f"node-{victim}")
    attacker_ids = {short(k.public) for k in attackers}
    assert evicted and all(e["peer"] in attacker_ids and e["useful"] == 0 for e in evicted)
    assert v.counters["peers_evicted"] == len(evicted)
    # Each newcomer took the slot of the youngest attacker before it: the attackers only churn among
    # themselves, in the slots the honest peers left free.
    assert len(evicted) >= 40 - 8


async def test_a_committee_member_gets_in_when_inbound_slots_are_full(autojump_clock: trio.abc.Clock) -> None:
    victim = 0
    peers = {"max_inbound": 4, "max_outbound": 8, "max_connections": 12}
    with structlog.testing.capture_logs() as logs:
        # One committee member never runs as a node: the test speaks for it with its key.
        cluster = open_memory_cluster(
            validators=4, accounts=2, seed=1, absent_validators=1, config={"peers": peers}
        )
        _, absent, _ = _keys(1, 4, 1, 2)
        member = absent[0]
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=3)
            v = c.driver(victim)
            assert member.public in v.core.committee
            attackers = [NodeKey.generate() for _ in range(12)]
            streams = [await connect_as(c, victim, k) for k in attackers]
            await trio.sleep(0.1)
            assert len(inbound(v)) == v.peers.inbound_cap() == 4
            stream = await connect_as(c, victim, member)
            await settle(v, member)
            assert member.public in v.peers
            assert v.peers.get(member.public) is not None
            assert len(inbound(v)) <= 4 + 1
            n.cancel_scope.cancel()
    del streams, stream
    evicted = events(logs, "peer_evicted", f"node-{victim}")
    assert any(e["committee"] and e["newcomer"] == short(member.public) for e in evicted)


async def test_outbound_slots_stay_the_nodes_own_while_fresh_key_peers_flood_a_restart(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The issue's case: a node restarts while fresh-key peers keep reconnecting to it. Its inbound
    slots fill with them, but it dials its own peers and applies the payments the others apply."""
    victim = 4  # a full node: no committee reserve helps it, only its outbound slots
    peers = {"target": 2, "max_outbound": 2, "max_inbound": 4, "max_connections": 6}
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(
            validators=4, full_nodes=1, accounts=2, seed=2, bootstrap_all=True, config={"peers": peers}
        )
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=1)
            honest = {c.driver(i).node_id for i in range(4)}
            attackers = [NodeKey.generate() for _ in range(40)]
            attacker_ids = {k.public for k in attackers}

            async def reconnecting(key: NodeKey) -> None:
                while True:
                    try:
                        stream = await connect_as(c, victim, key)
                        while await stream.receive_some(65536):
                            pass
                    except (trio.TooSlowError, KeyError, *PEER_ERRORS):
                        pass
                    await trio.sleep(0.05)

            await c.kill(victim)
            assert (await c.pay(0, 1, 5, via=0)).settled  # applied by the others while it is down
            for key in attackers:
                n.start_soon(reconnecting, key)
            await c.start(victim)
            v = c.driver(victim)
            most_inbound = 0
            attackers_held = 0
            with trio.fail_after(60):
                while v.core.ledger.applied_count() < 1 or v.peers.count("out") < 2:
                    most_inbound = max(most_inbound, len(inbound(v)))
                    attackers_held = max(attackers_held, len(attacker_ids & inbound(v)))
                    await trio.sleep(0.05)
            out = {p.node_id for p in v.peers.values() if p.direction == "out"}
            assert len(out) == 2 and out <= honest
            assert not (attacker_ids & out)
            for _ in range(40):
                most_inbound = max(most_inbound, len(inbound(v)))
                attackers_held = max(attackers_held, len(attacker_ids & inbound(v)))
                await trio.sleep(0.05)
            assert most_inbound <= 4
            assert attackers_held > 0  # the flood did reach it: attackers held inbound slots
            assert v.counters["connections_refused"] > 100  # the rest were refused after their handshake
            assert (await c.pay(1, 0, 2, via=1)).settled
            with trio.fail_after(30):
                while v.core.ledger.applied_count() < 2:
                    await trio.sleep(0.05)
            n.cancel_scope.cancel()
    refusals = events(logs, "connection_refused", f"node-{victim}")
    assert refusals and all(e["kind"] == "peer" for e in refusals)
    assert len(refusals) < v.counters["connections_refused"] / 10  # logged as counts, not line by line


async def test_a_storm_of_new_keys_is_spread_out_and_known_peers_still_get_in(
    autojump_clock: trio.abc.Clock,
) -> None:
    """40 fresh keys dialling at once: the first handshake_burst (4 here) are taken, the rest refused
    before any signature work; a committee member reconnecting is not held back."""
    peers = {"handshake_rate": 1.0, "handshake_burst": 4}
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(validators=4, accounts=2, seed=3, config={"peers": peers})
        async with cluster as c, trio.open_nursery() as n:
            await c.wait_ready(peers=3)
            v = c.driver(0)
            refused = taken = 0
            for _ in range(40):
                try:
                    await connect_as(c, 0, NodeKey.generate())
                    taken += 1
                except P2PNodeError:
                    refused += 1
            assert taken == 4 and refused == 36
            assert v.counters["connections_refused"] >= 36
            # A validator's restart: it is known, so it gets straight back in.
            await c.restart(1)
            await c.wait_ready(peers=3)
            n.cancel_scope.cancel()
    reasons = {e["reason"] for e in events(logs, "connection_refused", "node-0")}
    assert reasons == {"new peers beyond 1/s"}
