"""Sixteen nodes, each told one bootstrap address, find enough peers through peer exchange."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2pnode.localnet import LocalNet
from tests.system.conftest import NetUp

pytestmark = pytest.mark.slow

TARGET = 6


def test_sixteen_nodes_reach_their_peer_target(net_up: NetUp, tmp_path: Path) -> None:
    # configs/local-16.toml with free ports (base_port 0) so that runs never collide.
    definition = tmp_path / "local-16.toml"
    definition.write_text(
        "[cluster]\n"
        'chain_name = "discovery-16"\n'
        "validators = 4\n"
        "full_nodes = 12\n"
        "accounts = 2\n"
        "base_port = 0\n"
        "\n"
        "[defaults.peers]\n"
        f"target = {TARGET}\n"
    )
    cluster: LocalNet = net_up(definition=definition, timeout=120)
    names = cluster.names
    assert len(names) == 16

    for name in names:
        cfg = cluster.config(name)
        assert len(cfg.node.bootstrap) == 1, f"{name} bootstraps from {cfg.node.bootstrap}"
        assert cfg.peers.target == TARGET

    chain_ids = set()
    for name in names:
        info = trio.run(cluster.status, name)
        chain_ids.add(info["chain_id"])
        # One bootstrap address each: every peer beyond the first was found by peer exchange.
        assert info["peer_count"] >= TARGET, f"{name}: peer_count {info['peer_count']} < target {TARGET}"
        peer_ids = [p["node_id"] for p in info["peers"]]
        assert len(set(peer_ids)) == len(peer_ids), f"{name} lists a peer twice: {peer_ids}"
        assert info["node_id"] not in peer_ids, f"{name} counts itself as a peer"
    assert chain_ids == {cluster.cluster.chain_id.hex()}
