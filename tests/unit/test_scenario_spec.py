"""Scenario files (parsing, one-line errors naming the key) and the invariant checks (each shown to fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.errors import ConfigError
from p2pnode.scenario import invariants as inv
from p2pnode.scenario.runner import exit_code, render_report
from p2pnode.scenario.spec import load_scenario, parse_scenario

SCENARIOS = sorted((Path(__file__).parents[2] / "configs" / "scenarios").glob("*.toml"))

BASE = """
[cluster]
validators = 4
full_nodes = 1
"""


# == spec ===================================================================================================
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_load(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert sc.description
    # Each one fits in a couple of minutes on a small machine.
    assert sc.end_s() <= 60
    assert sc.load.rate <= 20


def test_violation_scenario_is_marked() -> None:
    sc = load_scenario(next(p for p in SCENARIOS if p.stem == "violation-forget-locks"))
    assert sc.expect.violation
    assert set(sc.roles.values()) == {"forget_locks"}
    assert sc.equivocations > 0


def test_full_example() -> None:
    sc = parse_scenario(
        BASE
        + """
[cluster.defaults.gossip]
heartbeat_ms = 40
[load]
rate = 12.5
duration_s = 10
[roles]
node-0 = "equivocate"
node-4 = "flood"
[[step]]
at_s = 5
action = "heal"
[[step]]
at_s = 2
action = "partition"
groups = [["node-0", "node-1", "node-4"], ["node-2", "node-3"]]
[[step]]
at_s = 3
action = "kill"
node = "node-1"
[[step]]
at_s = 4
action = "restart"
node = "node-1"
[[step]]
at_s = 1
action = "start"
node = "node-4"
[expect]
no_certificates_during_partition = true
"""
    )
    assert [s.action for s in sc.steps] == ["start", "partition", "kill", "restart", "heal"]
    assert sc.late_nodes == {"node-4"}
    assert sc.cluster.defaults == {"gossip": {"heartbeat_ms": 40}}
    assert sc.load.rate == 12.5
    assert sc.roles == {"node-0": "equivocate", "node-4": "flood"}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("[bogus]\n", "unknown section [bogus]"),
        ("[load]\nrat = 3\n", "unknown key load.rat"),
        ("[load]\nrate = -1\n", "load.rate"),
        ("[load]\nkind = 'shielded'\n", "load.kind"),
        ("[roles]\nnode-9 = 'flood'\n", "roles.node-9"),
        ("[roles]\nnode-4 = 'equivocate'\n", "roles.node-4: 'equivocate' is a validator role"),
        ("[roles]\nnode-1 = 'nice'\n", "roles.node-1"),
        ("[[step]]\nat_s = 1\naction = 'explode'\n", "step[0].action"),
        ("[[step]]\naction = 'kill'\nnode = 'node-1'\n", "missing key step[0].at_s"),
        ("[[step]]\nat_s = 1\naction = 'kill'\n", "missing key step[0].node"),
        ("[[step]]\nat_s = 1\naction = 'kill'\nnode = 'node-7'\n", "step[0].node"),
        (
            "[[step]]\nat_s = 1\naction = 'kill'\nnode = 'node-1'\ndelay_ms = 3\n",
            "unknown key step[0].delay_ms",
        ),
        ("[[step]]\nat_s = 1\naction = 'restart'\nnode = 'node-1'\n", "step[0]: cannot restart node-1"),
        ("[[step]]\nat_s = 1\naction = 'resume'\nnode = 'node-1'\n", "cannot resume"),
        (
            "[expect]\nno_certificates_during_partition = true\n"
            "[[step]]\nat_s = 1\naction = 'partition'\ngroups = [['node-0'], ['node-1']]\n",
            "needs every node in a group",
        ),
        (
            "[[step]]\nat_s = 1\naction = 'partition'\n"
            "groups = [['node-0','node-1','node-2'], ['node-2','node-3','node-4']]\n",
            "node-2 is in more than one group",
        ),
        ("[[step]]\nat_s = 1\naction = 'slow'\nnode = 'node-1'\n", "missing key step[0].delay_ms"),
        ("[[step]]\nat_s = 1\naction = 'equivocate'\nnodes = ['node-1']\n", "step[0].nodes"),
        ("[cluster.defaults.gossip]\nheartbeat_ms = 1\n", "cluster.defaults"),
        ("[cluster.defaults.testing]\nenabled = true\n", "cluster.defaults.testing"),
        ("[expect]\nviolation = 'yes'\n", "expect.violation"),
    ],
)
def test_errors_name_the_key(extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(BASE + extra)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_group_kill_at_next_ack_and_group_restart() -> None:
    sc = parse_scenario(
        BASE
        + """
[[step]]
at_s = 2
action = "kill"
nodes = "validators"
when = "next_ack"
[[step]]
at_s = 3
action = "restart"
nodes = "validators"
[[step]]
at_s = 5
action = "kill"
nodes = "all"
[[step]]
at_s = 6
action = "restart"
nodes = ["node-4", "node-0", "node-1", "node-2", "node-3"]
[[step]]
at_s = 8
action = "kill"
nodes = "full_nodes"
[expect]
payers_can_pay = true
final_payment_timeout_s = 12
"""
    )
    kill, restart, kill_all, restart_all, kill_full = sc.steps
    assert kill.targets == ("node-0", "node-1", "node-2", "node-3") and kill.when == "next_ack"
    assert kill.describe() == "kill validators (node-0,node-1,node-2,node-3) at the next acknowledgement"
    assert restart.targets == kill.targets and restart.when == ""
    assert kill_all.targets == tuple(f"node-{i}" for i in range(5)) and kill_all.group == "all"
    assert restart_all.targets[0] == "node-4" and restart_all.describe().startswith("restart node-4,node-0")
    assert kill_full.targets == ("node-4",)
    assert sc.expect.payers_can_pay and sc.expect.final_payment_timeout_s == 12.0
    one = parse_scenario(BASE + "[[step]]\nat_s = 1\naction = 'kill'\nnode = 'node-1'\nwhen = 'next_ack'\n")
    assert one.steps[0].targets == ("node-1",)
    assert one.steps[0].describe() == "kill node-1 at the next acknowledgement"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            "[[step]]\nat_s = 1\naction = 'kill'\nnodes = 'everyone'\n",
            "step[0].nodes: 'everyone' is not one of",
        ),
        ("[[step]]\nat_s = 1\naction = 'kill'\nnodes = []\n", "step[0].nodes: expected all, validators"),
        ("[[step]]\nat_s = 1\naction = 'kill'\nnodes = ['node-1', 'node-1']\n", "named twice"),
        ("[[step]]\nat_s = 1\naction = 'kill'\nnodes = ['node-9']\n", "step[0].nodes: 'node-9'"),
        ("[[step]]\nat_s = 1\naction = 'kill'\nnodes = 3\n", "step[0].nodes: expected"),
        (
            "[[step]]\nat_s = 1\naction = 'kill'\nnode = 'node-1'\nnodes = 'all'\n",
            "step[0].nodes: give node or nodes, not both",
        ),
        ("[[step]]\nat_s = 1\naction = 'restart'\n", "missing key step[0].node (action 'restart' needs"),
        ("[[step]]\nat_s = 1\naction = 'kill'\nnode = 'node-1'\nwhen = 'later'\n", "step[0].when: 'later'"),
        (
            "[[step]]\nat_s = 1\naction = 'kill'\nnode = 'node-1'\nwhen = 1\n",
            "step[0].when: expected a string",
        ),
        (
            "[[step]]\nat_s = 1\naction = 'restart'\nnodes = 'all'\nwhen = 'next_ack'\n",
            "unknown key step[0].when",
        ),
        (
            "[[step]]\nat_s = 1\naction = 'pause'\nnode = 'node-1'\nwhen = 'next_ack'\n",
            "unknown key step[0].when",
        ),
        (
            "[[step]]\nat_s = 1\naction = 'kill'\nnode = 'node-4'\n"
            "[[step]]\nat_s = 2\naction = 'kill'\nnodes = 'all'\n",
            "step[1]: cannot kill node-4 at 2s: it is killed then",
        ),
        (
            "[[step]]\nat_s = 1\naction = 'kill'\nnodes = 'validators'\n"
            "[[step]]\nat_s = 2\naction = 'restart'\nnodes = 'all'\n",
            "step[1]: cannot restart node-4 at 2s: it is up then",
        ),
        ("[expect]\npayers_can_pay = 1\n", "expect.payers_can_pay: expected true or false"),
        ("[expect]\nfinal_payment_timeout_s = 0\n", "expect.final_payment_timeout_s: 0 is outside"),
    ],
)
def test_group_and_trigger_errors_name_the_key(extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(BASE + extra)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_no_full_nodes_group() -> None:
    with pytest.raises(ConfigError, match="step\\[0\\].nodes: 'full_nodes' names no node"):
        parse_scenario(
            "[cluster]\nvalidators = 4\n[[step]]\nat_s = 1\naction = 'kill'\nnodes = 'full_nodes'\n"
        )


def test_missing_validators() -> None:
    with pytest.raises(ConfigError, match="missing key cluster.validators"):
        parse_scenario("[cluster]\nfull_nodes = 1\n")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + "[load]\nrate = 'fast'\n")
    with pytest.raises(ConfigError, match=r"bad.toml: load.rate: expected a number"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_scenario(tmp_path / "missing.toml")


# == invariants =============================================================================================
def applied(tx: str, sender: str = "aa", seq: int = 0, ts: int = 0) -> dict[str, object]:
    return {"event": "certificate_applied", "tx": tx, "sender": sender, "seq": seq, "ts_ns": ts}


def formed(tx: str, ts: int = 0) -> dict[str, object]:
    return {"event": "certificate_formed", "tx": tx, "ts_ns": ts}


def test_unique_certificates_holds() -> None:
    events = {"a": [applied("t1"), applied("t2", seq=1)], "b": [applied("t1"), formed("t2")]}
    assert inv.unique_certificates(events).ok


def test_unique_certificates_fails_across_nodes() -> None:
    events = {"a": [applied("t1")], "b": [applied("t2")]}  # same (sender, seq), two digests
    check = inv.unique_certificates(events)
    assert not check.ok
    assert "seq 0" in check.detail and check.facts["conflicts"][0]["certificates"] == {
        "t1": ["a"],
        "t2": ["b"],
    }


def test_unique_certificates_fails_on_formed_only() -> None:
    # Every node applied t1, but one formed a certificate for the conflicting t2 (keys known to the caller).
    events = {"a": [applied("t1")], "b": [applied("t1"), formed("t2")]}
    assert inv.unique_certificates(events).ok is True  # t2 unkeyed: cannot be attributed
    assert not inv.unique_certificates(events, {"t2": ("aa", 0)}).ok


def test_same_root() -> None:
    assert inv.same_root({"a": "r1", "b": "r1"}).ok
    assert not inv.same_root({"a": "r1", "b": "r2"}).ok
    assert "no status from b" in inv.same_root({"a": "r1", "b": None}).detail


def test_acknowledged_applied() -> None:
    assert inv.acknowledged_applied(["t1", "t2"], {"a": {"t1", "t2"}, "b": {"t1", "t2", "t3"}}).ok
    check = inv.acknowledged_applied(["t1", "t2"], {"a": {"t1", "t2"}, "b": {"t1"}})
    assert not check.ok and check.facts["missing"] == {"b": ["t2"]}


def test_supply_conserved() -> None:
    assert inv.supply_conserved({"a": {"x": 60, "y": 40}}, 100).ok
    assert not inv.supply_conserved({"a": {"x": 60, "y": 40}, "b": {"x": 61, "y": 40}}, 100).ok
    assert not inv.supply_conserved({"a": None}, 100).ok


def test_no_crash() -> None:
    assert inv.no_crash({"a": True, "b": False}, {"a": True, "b": False}).ok  # b was killed on purpose
    check = inv.no_crash({"a": True, "b": True}, {"a": True, "b": False})
    assert not check.ok and check.facts["dead"] == ["b"]


def test_memory_bounded() -> None:
    ok = inv.memory_bounded({"a": [50_000, 60_000, 55_000]}, bound_mb=20)
    assert ok.ok and ok.facts["peak_kb"] == {"a": 60_000}
    bad = inv.memory_bounded({"a": [50_000, 80_000], "b": [50_000, 51_000]}, bound_mb=20)
    assert not bad.ok and "a +29 MiB" in bad.detail


def test_no_certificates_during() -> None:
    events = {"a": [applied("t1", ts=100), formed("t2", ts=500)]}
    assert inv.no_certificates_during(events, [(200, 400)]).ok
    assert not inv.no_certificates_during(events, [(400, 600)]).ok
    assert inv.no_certificates_during(events, [(400, 600)], grace_ns=200).ok


def test_min_settled() -> None:
    assert inv.min_settled(10, 5).ok
    assert not inv.min_settled(4, 5).ok


def test_parse_log_lines_skips_torn_and_unrelated() -> None:
    lines = [
        '{"event": "certificate_applied", "tx": "t1", "sender": "aa", "seq": 0}',
        '{"event": "peer_disconnected", "peer": "x"}',
        '{"event": "certificate_applied", "tx": "t2", "sen',
        "not json certificate_applied",
    ]
    assert [e["tx"] for e in inv.parse_log_lines(lines)] == ["t1"]


def test_report_and_exit_code() -> None:
    passed = {"scenario": "x", "checks": [inv.same_root({"a": "r"}).to_json()], "violations": []}
    assert exit_code(passed) == 0 and "PASSED" in render_report(passed)
    caught = {"scenario": "x", "checks": [], "violations": ["same_root"], "expect_violation": True}
    assert exit_code(caught) == 1 and "caught" in render_report(caught)
    missed = {"scenario": "x", "checks": [], "violations": [], "expect_violation": True}
    assert exit_code(missed) == 1 and "NOT FOUND" in render_report(missed)


def test_payers_can_pay() -> None:
    ok = inv.payers_can_pay({"account-0": ("settled", "seq 3"), "account-1": ("settled", "seq 9")})
    assert ok.ok and "2 payers settled" in ok.detail
    # A slot split by the payer's own conflicting orders is the payer's doing: excluded, but listed.
    blocked = inv.payers_can_pay({"account-0": ("settled", "seq 3"), "account-1": ("blocked", "split")})
    assert blocked.ok and blocked.facts["blocked"] == ["account-1"] and "1 blocked" in blocked.detail
    frozen = inv.payers_can_pay(
        {"account-0": ("settled", "seq 3"), "account-1": ("failed", "seq 4 at node-0: refused locked")}
    )
    assert not frozen.ok and frozen.facts["frozen"] == ["account-1"]
    assert "1 of 2 payers cannot pay" in frozen.detail and "account-1: seq 4" in frozen.detail


def test_bounded_reconnects() -> None:
    conn = {"event": "peer_connected", "peer": "bad0"}
    other = {"event": "peer_connected", "peer": "good"}
    assert inv.bounded_reconnects({"a": [conn, conn, other]}, {"node-4": "bad0"}, bound=2).ok
    check = inv.bounded_reconnects({"a": [conn, conn, conn], "b": [conn]}, {"node-4": "bad0"}, bound=2)
    assert not check.ok and "a accepted 3 connections from node-4" in check.detail
