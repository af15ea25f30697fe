"""Dissemination by role (docs/gossip.md): votes among validators, certificates to full nodes.

In-memory clusters under the virtual clock; every count is read from the nodes' own gossip counters
and logs.
"""

from __future__ import annotations

import structlog
import trio

from p2pnode.core.gossip import CERT, ORDER, VOTE
from p2pnode.testing import open_memory_cluster
from p2pnode.wire.messages import Certificate, decode

BALANCE = 1_000_000


async def test_full_nodes_get_certificates_and_never_a_vote(autojump_clock: trio.abc.Clock) -> None:
    with structlog.testing.capture_logs() as events:
        async with open_memory_cluster(
            validators=4, full_nodes=8, accounts=4, seed=3, balance=BALANCE, bootstrap_all=False
        ) as c:
            await c.wait_ready(peers=3)
            for k in range(12):  # submitted at every node in turn, validators and full nodes
                assert (await c.pay(k % 4, (k + 1) % 4, 10 + k, via=k % 12)).settled
            await c.wait_converged(applied=12)
            cores = {n.name: c.driver(n).core for n in c.nodes}
            roots = {core.visible.root for core in cores.values()}
            full = {name: core for name, core in cores.items() if core.validator is None}
            validators = {name: core for name, core in cores.items() if core.validator is not None}
    assert len(roots) == 1
    assert len(full) == 8 and len(validators) == 4
    for core in full.values():
        assert core.router.kinds_received[VOTE] == 0
        # Each certificate taken in at most once by gossip (the others came by anti-entropy, after
        # which a gossiped copy is a duplicate dropped before decoding).
        assert 1 <= core.router.kinds_received[CERT] <= 12
        assert core.ledger.applied_count() == 12
    # A quorum (3) of validators had every order: at least 2 of them by gossip (one may be the
    # validator the client submitted to).
    assert sum(core.router.kinds_received[ORDER] for core in validators.values()) >= 12 * 2
    # No full node logged a vote; every validator logged the others' votes.
    vote_logs = [e for e in events if e["event"] == "vote_received"]
    assert vote_logs and all(e["node"] in validators for e in vote_logs)


async def test_a_validator_whose_only_path_runs_through_full_nodes_still_counts(
    autojump_clock: trio.abc.Clock,
) -> None:
    """node-0 has no direct link to any other validator, and node-1 never votes: a quorum (3 of 4)
    needs node-0's vote, which must cross full nodes, and node-0 needs the others' votes and orders
    the same way. Every payment settles everywhere with node-0's signature in its certificate."""
    async with open_memory_cluster(
        validators=4,
        full_nodes=3,
        accounts=3,
        byzantine={1: "silent"},
        seed=5,
        balance=BALANCE,
    ) as c:
        await c.partition([0], [1, 2, 3])  # node-0 keeps its links to the full nodes
        await c.wait_ready(peers=3)
        v0 = c.driver(0).core
        for k in range(5):
            assert (await c.pay(k % 3, (k + 1) % 3, 5 + k, via=2 + k % 5)).settled
        await c.wait_converged(applied=5)
        assert v0.router.bridging()
        assert not any(v in v0.router.peers for v in c.driver(0).core.committee.members if v != v0.node_id)
        signer0 = bytes(v0.node_id)
        for i in range(7):
            core = c.driver(i).core
            assert core.ledger.applied_count() == 5
            for raw in core.certs.values():
                cert = decode(raw, Certificate)
                assert signer0 in [entry[0] for entry in cert.signatures]
        assert len({c.driver(i).core.visible.root for i in range(7)}) == 1
        # The full nodes carried votes only because of the missing links.
        assert sum(c.driver(i).core.router.kinds_received[VOTE] for i in range(4, 7)) > 0
