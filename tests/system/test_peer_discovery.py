"""Sixteen nodes, each told one bootstrap address, find enough peers through peer exchange."""

from __future__ import annotations

import pytest
import trio

from p2pnode.testing import open_local_cluster

pytestmark = pytest.mark.slow

TARGET = 6


async def test_sixteen_nodes_reach_their_peer_target() -> None:
    # configs/local-16.toml (4 validators, 12 full nodes, peers.target 6) on free ports, so that runs
    # never collide; open_local_cluster returns once every node is ready (its peer target reached).
    with trio.fail_after(180):
        async with open_local_cluster(
            validators=4, full_nodes=12, accounts=2, config={"peers": {"target": TARGET}}, faults=False
        ) as cluster:
            names = [n.name for n in cluster.nodes]
            assert len(names) == 16

            for name in names:
                cfg = cluster.net.config(name)
                assert len(cfg.node.bootstrap) == 1, f"{name} bootstraps from {cfg.node.bootstrap}"
                assert cfg.peers.target == TARGET

            chain_ids = set()
            for name in names:
                info = await cluster.net.status(name)
                chain_ids.add(info["chain_id"])
                # One bootstrap address each: every peer beyond the first was found by peer exchange.
                assert info["peer_count"] >= TARGET, f"{name}: peer_count {info['peer_count']} < {TARGET}"
                peer_ids = [p["node_id"] for p in info["peers"]]
                assert len(set(peer_ids)) == len(peer_ids), f"{name} lists a peer twice: {peer_ids}"
                assert info["node_id"] not in peer_ids, f"{name} counts itself as a peer"
            assert chain_ids == {cluster.chain_id.hex()}
