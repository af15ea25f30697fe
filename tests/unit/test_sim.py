"""The simulator: convergence, determinism, the CPU and link models, and logs the latency tool reads.

Small simulations (up to 50 nodes); the long runs (1,000 nodes) are benchmarks, not tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from p2pnode.errors import ConfigError
from p2pnode.net.linkmodel import load_profile, profile_from_dict
from p2pnode.sim import CostTable, SimSpec, Simulation, render_summary
from p2pnode.sim.costs import costs_from_json, default_costs
from p2pnode.tools.latency import analyze

ROOT = Path(__file__).resolve().parents[2]
AWS5 = load_profile(ROOT / "configs/network/aws-5.toml")
LAN = load_profile(ROOT / "configs/network/lan.toml")


def _run(spec: SimSpec, profile=LAN, costs: CostTable | None = None, log_dir: Path | None = None):  # type: ignore[no-untyped-def]
    sim = Simulation(spec, profile, costs or CostTable(), log_dir=log_dir)
    return sim, sim.run().summary()


def _logs(d: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text().splitlines() for p in sorted(d.glob("*.log"))}


def test_fifty_nodes_converge_and_the_latency_tool_reads_their_logs(tmp_path: Path) -> None:
    spec = SimSpec(nodes=50, validators=4, full_degree=6, payments=30, rate=20.0, seed=5)
    sim, s = _run(spec, AWS5, log_dir=tmp_path)
    assert s["settled"] == 30 and s["refused"] == 0
    assert s["applied_everywhere"] == 30
    assert s["roots_equal"]
    assert len({n.core.visible.applied for n in sim.nodes}) == 1
    assert all(n.core.visible.applied == 30 for n in sim.nodes)
    # Full nodes never see a vote (dissemination by role), validators see every other validator's.
    assert all(n.kinds.get("gossip_vote", 0) == 0 for n in sim.nodes if n.role == "full")
    assert all(n.kinds.get("gossip_vote", 0) >= 30 * 3 for n in sim.nodes if n.role == "validator")
    report = analyze(_logs(tmp_path))
    assert len(report.nodes) == 50
    assert report.payments == 30 and report.settled == 30
    assert report.malformed == 0
    # The tool's "applied, last node" is the simulator's: both from certificate_applied; the tool counts
    # from order_submitted, written when the node's submit job ends (its handler and log lines cost
    # well under 0.5 ms of modelled CPU), the simulator from the scheduled send.
    tool = report.stages["applied_last"]
    assert tool.p50 == pytest.approx(s["latency"]["applied_last"]["p50_ms"], abs=0.5)
    assert tool.p50 <= s["latency"]["applied_last"]["p50_ms"]
    text = render_summary({**s, "peak_rss_mib": 1.0, "costs": "defaults"})
    assert "30/30 payments settled" in text and "roots equal: yes" in text


def test_same_seed_same_bytes_in_another_process_and_another_seed_differs(tmp_path: Path) -> None:
    args = ["--nodes", "10", "--validators", "4", "--payments", "20", "--rate", "20"]
    args += ["--network", str(ROOT / "configs/network/aws-5.toml")]

    def run(out: Path, seed: int, hashseed: str) -> dict[str, list[str]]:
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        cmd = [
            sys.executable,
            "-m",
            "p2pnode",
            "sim",
            *args,
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--json",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["roots_equal"]
        return _logs(out / "logs")

    a = run(tmp_path / "a", 1, "1")
    b = run(tmp_path / "b", 1, "2")  # another hash seed: set and dict orders of bytes differ
    c = run(tmp_path / "c", 2, "1")
    assert a == b
    assert sum(len(v) for v in a.values()) > 20 * 10
    assert a != c


def test_latency_is_bounded_below_by_the_profile() -> None:
    """On aws-5 with 4 validators placed in 4 regions, a payment submitted in region r settles at its
    node only after its order reached a quorum (3 validators) and their votes came back: at least the
    third-smallest round trip from r to a validator region (a round trip to its own region's validator
    counts as 0 only for the node it was submitted to). Checked per payment against that bound."""
    spec = SimSpec(nodes=4, validators=4, payments=24, rate=10.0, seed=2)
    sim, s = _run(spec, AWS5)
    assert s["applied_everywhere"] == 24
    regions = [n.region for n in sim.nodes]
    assert len(set(regions)) == 4
    for p in sim.payments:
        home = regions[p.node]
        rtts = sorted(AWS5.rtt_ms(home, r) if r != home else 0.0 for r in regions)
        bound_ms = rtts[2] * 0.8  # jitter is 5 % of each one-way delay (normal): 20 % is > 4 sd
        assert p.settled is not None
        assert (p.settled - p.sent) * 1e3 >= bound_ms
    assert s["latency"]["client"]["p50_rtt"] > 0.5


def test_a_slower_cpu_queues_work_and_settles_later() -> None:
    """The CPU is modelled: the same run with proofs ten times as expensive settles later, and the
    nodes' queues grow, on the same virtual network."""
    spec = SimSpec(nodes=4, validators=4, payments=40, rate=200.0, seed=1)
    base = CostTable()
    slow = dataclasses.replace(
        base, schnorr_verify=base.schnorr_verify * 10, schnorr_batch=base.schnorr_batch * 10
    )
    _, fast_s = _run(spec, LAN, base)
    _, slow_s = _run(spec, LAN, slow)
    assert fast_s["applied_everywhere"] == slow_s["applied_everywhere"] == 40
    assert slow_s["latency"]["client"]["p50_ms"] > 3 * fast_s["latency"]["client"]["p50_ms"]
    assert (
        slow_s["roles"]["validator"]["busy_share_median"] > fast_s["roles"]["validator"]["busy_share_median"]
    )


def test_shared_cores_bound_throughput() -> None:
    """Closed loop on nodes sharing one core: every payment costs each of the 4 validators at least one
    proof check, so settled/s cannot exceed 1 / (4 * schnorr_batch); with a core per node it does more."""
    spec = SimSpec(nodes=4, validators=4, payments=120, rate=None, window=32, seed=4)
    costs = CostTable()
    _, one = _run(dataclasses.replace(spec, cores=1), LAN, costs)
    _, own = _run(spec, LAN, costs)
    assert one["applied_everywhere"] == own["applied_everywhere"] == 120
    assert one["settled_per_s"] <= 1 / (4 * costs.schnorr_batch)
    assert own["settled_per_s"] > 1.5 * one["settled_per_s"]


def test_each_distinct_check_is_computed_once() -> None:
    spec = SimSpec(nodes=20, validators=4, payments=10, rate=20.0, seed=3)
    sim, s = _run(spec, LAN)
    assert s["distinct_checks"]["proofs"] == 10  # each order's proof, whatever the number of nodes
    per_node_checks = sum(n.core.votes.checks for n in sim.nodes)
    assert s["distinct_checks"]["signatures"] < per_node_checks  # shared, charged to each node


def test_cost_tables_load_and_refuse_bad_keys(tmp_path: Path) -> None:
    table = default_costs()
    f = tmp_path / "costs.json"
    table.save(f)
    assert costs_from_json(json.loads(f.read_text())) == table
    with pytest.raises(ConfigError, match="unknown key 'schnorr'"):
        costs_from_json({"version": 1, "schnorr": 1e-3})
    with pytest.raises(ConfigError, match="handler.nope"):
        costs_from_json({"version": 1, "handler": {"nope": 1e-5}})
    with pytest.raises(ConfigError, match="expected seconds"):
        costs_from_json({"version": 1, "commit": -1})
    with pytest.raises(ConfigError, match="version"):
        costs_from_json({"version": 2})


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('regions = ["a"]\n[delay_ms]\na = [1, 2]\n')
    for args, needle in (
        (["--nodes", "4", "--validators", "5"], "--validators 5 is more than --nodes 4"),
        (["--network", str(bad)], "delay_ms.a: expected 1 numbers"),
        (["--network", str(tmp_path / "missing.toml")], "cannot read network profile"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "p2pnode", "sim", *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert needle in done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_one_region_profile_from_a_table() -> None:
    p = profile_from_dict({"regions": ["x"], "delay_ms": {"x": [2.0]}})
    spec = SimSpec(nodes=4, validators=4, payments=8, rate=10.0, seed=0)
    _, s = _run(spec, p)
    assert s["applied_everywhere"] == 8
    assert s["latency"]["applied_first"]["p50_ms"] >= 4.0  # order out and votes back: two 2 ms hops


def test_a_wake_up_is_paid_by_jobs_that_find_their_node_idle() -> None:
    """``wake`` is charged once per job that arrives at an idle node: at light load nearly every job
    does (the latency grows by several wake-ups along the critical path); a saturated node always
    has work queued, so far fewer jobs per payment pay it."""
    light = SimSpec(nodes=4, validators=4, payments=40, rate=5.0, seed=1, cores=2)
    woken = dataclasses.replace(CostTable(), wake=1e-3)
    sim0, s0 = _run(light, LAN)
    sim1, s1 = _run(light, LAN, woken)
    assert s0["applied_everywhere"] == s1["applied_everywhere"] == 40
    assert s1["latency"]["client"]["p50_ms"] >= s0["latency"]["client"]["p50_ms"] + 3.0
    wakes_light = sum(n.wakes for n in sim1.nodes) / 40
    # Every node's cost grew by exactly its wake-ups times the cost (same seed, same service draws).
    for a, b in zip(sim0.nodes, sim1.nodes, strict=True):
        assert b.busy_s - a.busy_s == pytest.approx(b.wakes * 1e-3, rel=0.05, abs=1e-3)
    heavy = SimSpec(nodes=4, validators=4, payments=200, rate=None, window=64, seed=1, cores=2)
    sim2, _ = _run(heavy, LAN, woken)
    wakes_heavy = sum(n.wakes for n in sim2.nodes) / 200
    assert wakes_light > 8  # each of 4 nodes wakes for the order, its proof, votes, the commit, ...
    assert wakes_heavy < wakes_light / 3


def test_a_commit_after_a_pause_costs_commit_idle() -> None:
    """At 2 payments/s each payment's first commit finds the store idle: the validators' lock commit,
    before their votes, costs the 10 ms idle figure; the applied commit a few milliseconds later
    follows it closely and costs the busy-stream figure. So the payment takes 9.9 ms longer; with
    ``store_idle_s`` longer than the gaps between payments no commit is an idle one."""
    spec = SimSpec(nodes=4, validators=4, payments=12, rate=2.0, seed=3)
    base = dataclasses.replace(CostTable(), commit=0.1e-3, commit_idle=0.0)
    idle = dataclasses.replace(base, commit_idle=10e-3)
    never = dataclasses.replace(idle, store_idle_s=5.0)
    _, fast = _run(spec, LAN, base)
    _, slow = _run(spec, LAN, idle)
    _, same = _run(spec, LAN, never)
    assert fast["applied_everywhere"] == slow["applied_everywhere"] == same["applied_everywhere"] == 12
    assert slow["latency"]["client"]["p50_ms"] == pytest.approx(
        fast["latency"]["client"]["p50_ms"] + 9.9, abs=1.0
    )
    assert same["latency"]["client"]["p50_ms"] == pytest.approx(fast["latency"]["client"]["p50_ms"], abs=0.5)


def test_full_nodes_dial_validators_first_within_their_inbound_slots() -> None:
    """The topology a ``net up`` cluster forms: with 12 full nodes each is connected to all 4
    validators; with 60 (and 24 inbound slots per validator) the validators' slots fill and the later
    full nodes dial earlier full nodes. Every node has its degree and the graph is connected."""
    sim = Simulation(SimSpec(nodes=16, validators=4, full_degree=6, payments=1, seed=2), LAN, CostTable())
    validator_ids = {n.core.node_id for n in sim.nodes[:4]}
    for n in sim.nodes[4:]:
        assert validator_ids <= set(n.peers)
        assert len(n.peers) >= 6
    big = Simulation(SimSpec(nodes=64, validators=4, full_degree=6, payments=1, seed=2), LAN, CostTable())
    for v in big.nodes[:4]:
        full_peers = [p for p in v.peers.values() if p.role == "full"]
        assert len(full_peers) == big.max_inbound
    assert all(len(n.peers) >= 6 for n in big.nodes[4:])
    seen, todo = {0}, [big.nodes[0]]
    while todo:
        for p in todo.pop().peers.values():
            if p.index not in seen:
                seen.add(p.index)
                todo.append(p)
    assert len(seen) == 64


def test_fit_wake_meets_its_target() -> None:
    from p2pnode.sim.calibrate import fit_wake, light_p50_ms

    table = CostTable()
    base = light_p50_ms(table, payments=60)
    fitted, wake = fit_wake(table, base + 4.0, payments=60)
    assert wake > 0
    assert light_p50_ms(fitted, payments=60) == pytest.approx(base + 4.0, abs=0.4)
    assert fit_wake(table, base - 1.0, payments=60)[1] == 0.0  # already slower than the target


def test_the_clients_node_gets_the_certificate_pushed_by_a_validator(tmp_path: Path) -> None:
    """A full node that gave the validators a client's order gets the certificate in full from a
    validator (hops 1), not by announcement or from a relay: each validator pushes it first to the
    order's origin (docs/gossip.md)."""
    spec = SimSpec(nodes=16, validators=4, full_degree=6, payments=48, rate=10.0, seed=4)
    sim, s = _run(spec, AWS5, log_dir=tmp_path)
    assert s["applied_everywhere"] == 48
    validators = {n.key.public.hex()[:16] for n in sim.nodes[:4]}
    full_origin = {p.digest.hex(): f"node-{p.node}" for p in sim.payments if p.node >= 4}
    got = {}
    for lines in _logs(tmp_path).values():
        for line in lines:
            e = json.loads(line)
            if e["event"] == "certificate_received" and full_origin.get(e["tx"]) == e["node"]:
                got[e["tx"]] = (e["hops"], e["peer"])
    assert len(full_origin) == 36
    assert set(got) == set(full_origin)  # none came by anti-entropy
    assert all(hops == 1 and peer in validators for hops, peer in got.values())
