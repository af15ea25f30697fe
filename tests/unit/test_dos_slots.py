"""The inbound-slot rule (``admit_inbound``) and the peer-slot config keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.config import load_config
from p2pnode.errors import ConfigError
from p2pnode.net.peers import SlotHolder, admit_inbound


def holder(name: str, useful: int, since: float, committee: bool = False) -> SlotHolder:
    return SlotHolder(name.encode(), useful, since, committee)


def test_below_the_cap_anyone_gets_in_and_nobody_is_evicted() -> None:
    assert admit_inbound([holder("a", 0, 1.0)], cap=2, committee=False) == (True, None)


def test_a_newcomer_evicts_only_the_youngest_peer_with_nothing_delivered_not_among_the_oldest() -> None:
    inbound = [
        holder("old1", 0, 1.0),
        holder("old2", 0, 2.0),
        holder("useful", 5, 3.0),
        holder("idle", 0, 4.0),
        holder("newest", 0, 5.0),
    ]
    assert admit_inbound(inbound, cap=5, committee=False, protect_oldest=2) == (True, b"newest")


def test_a_newcomer_is_refused_when_every_inbound_peer_is_protected() -> None:
    inbound = [holder("old1", 0, 1.0), holder("old2", 0, 2.0), holder("u1", 1, 3.0), holder("u2", 9, 4.0)]
    assert admit_inbound(inbound, cap=4, committee=False, protect_oldest=2) == (False, None)
    # committee members are never evicted by a non-committee newcomer, even with nothing delivered
    inbound = [holder("old", 0, 1.0), holder("v", 0, 9.0, committee=True)]
    assert admit_inbound(inbound, cap=2, committee=False, protect_oldest=1) == (False, None)


def test_a_committee_member_evicts_the_least_useful_non_committee_peer() -> None:
    inbound = [holder("old", 0, 1.0), holder("u", 3, 2.0), holder("v", 0, 3.0, committee=True)]
    # the oldest is protected only against non-committee newcomers
    assert admit_inbound(inbound, cap=3, committee=True, protect_oldest=4) == (True, b"old")
    inbound = [holder("u1", 3, 1.0), holder("u2", 1, 2.0), holder("u3", 1, 3.0)]
    assert admit_inbound(inbound, cap=3, committee=True) == (True, b"u3")  # fewest useful, youngest


def test_a_committee_member_gets_in_beyond_the_cap_when_only_committee_members_hold_slots() -> None:
    inbound = [holder("v1", 0, 1.0, committee=True), holder("v2", 0, 2.0, committee=True)]
    assert admit_inbound(inbound, cap=2, committee=True) == (True, None)


def write(tmp_path: Path, peers: str) -> Path:
    path = tmp_path / "node.toml"
    node = 'key_file = "k.key"\ngenesis = "genesis.toml"\ndata_dir = "data"'
    path.write_text(f"[node]\n{node}\n[peers]\n{peers}\n", encoding="utf-8")
    return path


def test_slot_keys_default_and_must_fit_in_max_connections(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert (cfg.peers.max_inbound, cfg.peers.max_outbound, cfg.peers.max_connections) == (24, 8, 32)
    cfg = load_config(write(tmp_path, "max_inbound = 10\nmax_outbound = 4\nmax_connections = 14"))
    assert (cfg.peers.max_inbound, cfg.peers.max_outbound) == (10, 4)
    with pytest.raises(ConfigError, match="max_inbound \\+ peers.max_outbound"):
        load_config(write(tmp_path, "max_inbound = 30\nmax_outbound = 8"))
    with pytest.raises(ConfigError, match="peers.max_outbound"):
        load_config(write(tmp_path, "max_outbound = 0"))
