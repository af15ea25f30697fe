"""Attack scenarios: the ``attack`` step and the new ``[expect]`` keys, the checks
``latency_under_attack`` and ``attacker_penalized`` on synthetic events (each shown to fail), the
attack window, the bench table, and one client-port attack against an in-process fake server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.errors import ConfigError
from p2pnode.scenario import invariants as inv
from p2pnode.scenario.attacks import AttackRecord, run_attack
from p2pnode.scenario.bench import BenchRow, bench_row, render_bench
from p2pnode.scenario.report import render_report
from p2pnode.scenario.spec import load_scenario, parse_scenario
from p2pnode.wire import codec
from p2pnode.wire.messages import ErrorReply, StatusReply, decode

ROOT = Path(__file__).parents[2]
BASE = """
[cluster]
validators = 4
full_nodes = 1
"""
ATTACK = (
    BASE
    + """
[[step]]
at_s = 10
action = "attack"
node = "node-1"
kind = "idle_clients"
count = 300
duration_s = 15
"""
)


# == spec ===================================================================================================
def test_attack_step_and_expect_keys_parse() -> None:
    sc = parse_scenario(ATTACK + "[expect]\nmax_latency_ratio = 3.0\nattacker_penalized = true\n")
    (step,) = sc.attacks
    assert (step.node, step.kind, step.count, step.duration_s) == ("node-1", "idle_clients", 300, 15.0)
    assert step.describe() == "attack node-1 idle_clients x300 for 15s"
    assert sc.expect.max_latency_ratio == 3.0 and sc.expect.attacker_penalized


def test_expect_defaults_leave_the_new_checks_off() -> None:
    sc = parse_scenario(BASE)
    assert sc.expect.max_latency_ratio == 0 and not sc.expect.attacker_penalized


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (ATTACK.replace('"idle_clients"', '"teardrop"'), "step[0].kind"),
        (ATTACK.replace("count = 300", "count = 100000"), "step[0].count"),
        (ATTACK.replace("duration_s = 15", "duration_s = 0"), "step[0].duration_s"),
        (ATTACK.replace('node = "node-1"\n', ""), "step[0].node"),
        (ATTACK.replace('kind = "idle_clients"\n', ""), "step[0].kind"),
        (ATTACK + '[roles]\nnode-1 = "flood"\n', "step[0].node"),
        (BASE + "[expect]\nattacker_penalized = true\n", "expect.attacker_penalized"),
        (BASE + "[expect]\nmax_latency_ratio = -1\n", "expect.max_latency_ratio"),
        (ATTACK.replace("count = 300", "count = 300\nwhen = 'next_ack'"), "step[0].when"),
    ],
)
def test_bad_attack_keys_are_named(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(text)


@pytest.mark.parametrize("stem", ["attack-idle-clients", "attack-slowloris", "attack-long-waits"])
def test_client_attack_files(stem: str) -> None:
    sc = load_scenario(ROOT / "configs" / "scenarios" / f"{stem}.toml")
    assert (sc.cluster.validators, sc.cluster.full_nodes) == (4, 1)
    assert sc.expect.max_latency_ratio == 3.0 and sc.expect.max_rss_growth_mb == 50
    assert sc.expect.attacker_penalized and sc.expect.min_settled > 0
    assert sc.attacks and min(s.at_s for s in sc.attacks) >= 8  # a baseline before the attack
    assert all(s.at_s + s.duration_s <= sc.load.duration_s for s in sc.attacks)


# == attack window ==========================================================================================
T0 = 1_000_000_000_000


def test_attack_start_is_the_earliest_of_role_events_and_steps() -> None:
    events = {
        "node-4": [{"event": "byzantine_behaviour_started", "ts_ns": T0 + 9_000_000_000, "role": "flood"}],
        "node-0": [{"event": "peer_connected", "ts_ns": T0 + 1}],
    }
    assert inv.attack_start_s(events, T0) == pytest.approx(9.0)
    assert inv.attack_start_s(events, T0, [12.0]) == pytest.approx(9.0)
    assert inv.attack_start_s(events, T0, [7.5]) == pytest.approx(7.5)
    assert inv.attack_start_s({"node-0": []}, T0) is None


def test_percentile_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert inv.percentile(values, 0.5) == 50.0
    assert inv.percentile(values, 0.99) == 99.0
    assert inv.percentile([3.0, math.inf, 1.0], 0.99) == math.inf


# == latency_under_attack ===================================================================================
def _pays(
    before: int, after: int, base_s: float, attack_s: float, failed_after: int = 0
) -> list[tuple[float, float, str]]:
    out = [(i * 0.1, base_s, "settled") for i in range(before)]
    out += [(10 + i * 0.1, attack_s, "settled") for i in range(after - failed_after)]
    out += [(20 + i * 0.1, 10.0, "timeout") for i in range(failed_after)]
    return out


def test_latency_within_bound_holds_with_facts() -> None:
    c = inv.latency_under_attack(_pays(50, 100, 0.1, 0.25), 10.0, 3.0)
    assert c.ok, c.detail
    assert c.facts["baseline"]["payments"] == 50 and c.facts["attack"]["payments"] == 100
    assert c.facts["baseline"]["p99_s"] == 0.1 and c.facts["attack"]["p50_s"] == 0.25
    assert c.facts["ratio"] == pytest.approx(2.5)


def test_latency_beyond_bound_fails() -> None:
    c = inv.latency_under_attack(_pays(50, 100, 0.1, 0.5), 10.0, 3.0)
    assert not c.ok and c.facts["ratio"] == pytest.approx(5.0)
    assert "x5.00" in c.detail


def test_latency_fails_on_a_small_window() -> None:
    c = inv.latency_under_attack(_pays(19, 100, 0.1, 0.1), 10.0, 3.0)
    assert not c.ok and "too few payments" in c.detail and "baseline 19" in c.detail
    c = inv.latency_under_attack(_pays(50, 5, 0.1, 0.1), 10.0, 3.0)
    assert not c.ok and "attack 5" in c.detail


def test_latency_counts_payments_that_did_not_settle_as_unbounded() -> None:
    """A victim that turns honest clients away must not look fast: 2 of 100 refused is beyond p99."""
    c = inv.latency_under_attack(_pays(50, 100, 0.1, 0.1, failed_after=2), 10.0, 3.0)
    assert not c.ok and "unbounded" in c.detail and c.facts["attack"]["unsettled"] == 2
    assert c.facts["attack"]["p99_s"] is None and c.facts["ratio"] is None
    # One of a hundred is within the p99.
    assert inv.latency_under_attack(_pays(50, 100, 0.1, 0.1, failed_after=1), 10.0, 3.0).ok


def test_latency_fails_on_an_unbounded_baseline() -> None:
    pays = _pays(50, 100, 0.1, 0.1) + [(1.0, 10.0, "refused")]
    c = inv.latency_under_attack(pays, 10.0, 3.0)
    assert not c.ok and "baseline p99 unbounded" in c.detail


def test_latency_without_an_attack_fails() -> None:
    c = inv.latency_under_attack(_pays(50, 100, 0.1, 0.1), None, 3.0)
    assert not c.ok and "no attack" in c.detail


# == attacker_penalized =====================================================================================
ATT = "aaaaaaaaaaaaaaaa"
FRESH = "bbbbbbbbbbbbbbbb"
START = T0 + 5_000_000_000


def _ev(event: str, ts: int, **kw: Any) -> dict[str, Any]:
    return {"event": event, "ts_ns": ts, **kw}


def test_every_reached_node_penalizing_the_attacker_holds() -> None:
    events = {
        "node-0": [
            _ev("peer_connected", T0, peer=ATT),
            _ev("peer_penalized", START + 1, peer=ATT, reason="x"),
        ],
        "node-1": [
            _ev("peer_connected", T0, peer=FRESH),
            _ev("peer_slow", START + 2, peer=FRESH, reason="slow"),
        ],
        "node-2": [_ev("peer_connected", T0, peer="cccccccccccccccc")],  # never reached
    }
    c = inv.attacker_penalized(events, {ATT, FRESH}, START)
    assert c.ok, c.detail
    assert set(c.facts["victims"]) == {"node-0", "node-1"}
    assert c.facts["victims"]["node-1"]["first_event"] == "peer_slow"
    assert c.facts["victims"]["node-1"]["first_reason"] == "slow"


def test_a_reached_node_that_never_refused_fails() -> None:
    events = {
        "node-0": [_ev("peer_connected", T0, peer=ATT), _ev("peer_penalized", START + 1, peer=ATT)],
        "node-1": [_ev("peer_connected", T0, peer=ATT)],
    }
    c = inv.attacker_penalized(events, {ATT}, START)
    assert not c.ok and "node-1" in c.detail and c.facts["victims"]["node-1"]["refusals"] == 0


def test_refusals_before_the_attack_or_of_someone_else_do_not_count() -> None:
    events = {
        "node-0": [
            _ev("peer_connected", T0, peer=ATT),
            _ev("peer_penalized", START - 1, peer=ATT),  # before the attack started
            _ev("peer_penalized", START + 1, peer="cccccccccccccccc"),  # another peer
            _ev("client_closed", START + 1, reason="idle", peer="client"),  # no client attack here
        ]
    }
    assert not inv.attacker_penalized(events, {ATT}, START).ok


def test_refused_connection_named_by_address() -> None:
    events = {
        "node-0": [
            _ev("connection_refused", START + 1, addr="127.0.0.1:40001", kind="peer", reason="slots full")
        ]
    }
    c = inv.attacker_penalized(events, {ATT}, START, attacker_addrs={"127.0.0.1:40001"})
    assert c.ok, c.detail


def test_nobody_reached_fails() -> None:
    c = inv.attacker_penalized({"node-0": [_ev("peer_connected", T0, peer="c" * 16)]}, {ATT}, START)
    assert not c.ok and "reached no honest node" in c.detail


def test_client_attack_victim_refusal_with_reason_counts() -> None:
    events = {
        "node-1": [
            _ev("client_closed", START - 1, reason="idle: no request within 60s", peer="client"),
            _ev("connection_refused", START + 3, kind="client", reason="too many client connections (128)"),
            _ev("client_closed", START + 4, reason="", peer="client"),  # no reason: not counted
        ],
        "node-0": [],
    }
    c = inv.attacker_penalized(events, (), None, {"node-1": START}, client_evidence={"node-1": 25})
    assert c.ok, c.detail
    assert c.facts["victims"]["node-1"]["refusals"] == 1
    assert c.facts["victims"]["node-1"]["first_event"] == "connection_refused"
    assert set(c.facts["victims"]) == {"node-1"}


def test_client_attack_without_refusal_or_without_the_attacker_seeing_one_fails() -> None:
    quiet = {"node-1": [_ev("peer_connected", START + 1, peer="c" * 16)]}
    assert not inv.attacker_penalized(quiet, (), None, {"node-1": START}).ok
    # The victim refused someone (an honest client?), but no connection of the attacker was cut.
    noisy = {"node-1": [_ev("client_closed", START + 1, reason="idle", peer="client")]}
    c = inv.attacker_penalized(noisy, (), None, {"node-1": START}, client_evidence={"node-1": 0})
    assert not c.ok


def test_wanted_events_include_the_attack_events() -> None:
    lines = [
        '{"event": "byzantine_identity", "node_id": "abcd", "ts_ns": 1}',
        '{"event": "client_closed", "reason": "idle", "ts_ns": 2}',
        '{"event": "handshake_refused", "reason": "timeout", "ts_ns": 3}',
        '{"event": "order_ignored", "ts_ns": 4}',
    ]
    assert [e["event"] for e in inv.parse_log_lines(lines)] == [
        "byzantine_identity",
        "client_closed",
        "handshake_refused",
    ]


# == report and bench =======================================================================================
def _report(**kw: Any) -> dict[str, Any]:
    lat = inv.latency_under_attack(_pays(50, 100, 0.1, 0.2), 10.0, 3.0)
    pen = inv.attacker_penalized(
        {"node-1": [_ev("client_closed", START + 1, reason="frame not completed", peer="client")]},
        (),
        None,
        {"node-1": START},
    )
    mem = inv.memory_bounded({"node-1": [50_000, 60_240]}, 50)
    rec = AttackRecord(node="node-1", kind="slowloris", count=100, duration_s=12, started_s=10.0, opened=100)
    rec.cut, rec.cut_s = 100, [10.1] * 100
    report: dict[str, Any] = {
        "scenario": "attack-x",
        "load": {
            "attempted": 150,
            "settled": 150,
            "outcomes": {"settled": 150},
            "skipped_busy": 0,
            "latency_p50_s": 0.1,
        },
        "attack": {
            "start_s": 10.0,
            "latency": lat.facts,
            "penalized": pen.facts["victims"],
            "client_attacks": [rec.to_json()],
            "byzantine_stats": {},
        },
        "checks": [c.to_json() for c in (lat, pen, mem)],
        "violations": [],
        "expect_violation": False,
        "wall_s": 40.0,
    }
    report.update(kw)
    return report


def test_report_text_shows_both_windows_and_the_ratio() -> None:
    text = render_report(_report())
    assert "baseline    50 payments (0 unsettled)  p50 100ms  p99 100ms" in text
    assert "attack     100 payments (0 unsettled)  p50 200ms  p99 200ms" in text
    assert "p99 ratio x2.00" in text
    assert "slowloris on node-1" in text and "100 cut by the victim" in text
    assert "node-1: 1 refusals of the attacker, first client_closed" in text


def test_bench_row_from_a_report() -> None:
    row = bench_row(Path("a.toml"), _report(), 41.0)
    assert row.passed and (row.settled, row.attempted) == (150, 150)
    assert row.latency_ratio == pytest.approx(2.0) and row.max_rss_growth_mb == 10.0
    assert row.attacker_penalized is True


def test_bench_counts_a_caught_violation_as_passed_and_a_missed_one_as_failed() -> None:
    caught = bench_row(Path("v.toml"), _report(expect_violation=True, violations=["same_root"]), 1.0)
    missed = bench_row(Path("v.toml"), _report(expect_violation=True), 1.0)
    failed = bench_row(Path("f.toml"), _report(violations=["latency_under_attack"]), 1.0)
    assert caught.passed and not missed.passed and not failed.passed
    text = render_bench([caught, missed, failed])
    assert "yes (v)" in text and "NO (v)" in text and "1 of 3 passed" in text
    assert "violations: latency_under_attack" in text


def test_bench_shows_an_unbounded_ratio() -> None:
    lat = inv.latency_under_attack(_pays(50, 100, 0.1, 0.1, failed_after=5), 10.0, 3.0)
    report = _report()
    report["attack"]["latency"] = lat.facts
    row = bench_row(Path("a.toml"), report, 1.0)
    assert row.latency_unbounded and "unbounded" in render_bench([row])
    assert isinstance(BenchRow.to_json(row), dict)


# == an attack against an in-process server =================================================================
async def _server(stream: trio.SocketStream, *, cap: int, served: list[int], frame_timeout: float) -> None:
    """A tiny node stand-in: refuses beyond ``cap`` clients, answers requests, cuts slow frames."""
    decoder = codec.FrameDecoder(codec.DEFAULT_MAX_FRAME)
    async with stream:
        if served[0] >= cap:
            await stream.send_all(codec.frame(ErrorReply(reason="too many client connections").encode()))
            return
        served[0] += 1
        try:
            started: float | None = None
            partial = 0  # bytes of the frame not yet complete
            while True:
                timeout = math.inf if started is None else started + frame_timeout - trio.current_time()
                with trio.move_on_after(max(0.0, timeout)) as scope:
                    data = await stream.receive_some(65536)
                if scope.cancelled_caught or not data:
                    return
                frames = decoder.feed(data)
                for body in frames:
                    decode(body)
                    await stream.send_all(codec.frame(StatusReply(info={}).encode()))
                partial += len(data) - sum(codec.HEADER.size + len(f) for f in frames)
                if not partial:
                    started = None
                elif started is None or frames:
                    started = trio.current_time()
        finally:
            served[0] -= 1


async def test_slowloris_is_cut_and_recorded(autojump_clock: trio.abc.Clock) -> None:
    served = [0]
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            trio.serve_tcp,
            lambda s: _server(s, cap=3, served=served, frame_timeout=2.0),
            0,
        )
        port = listeners[0].socket.getsockname()[1]
        rec = AttackRecord(node="node-1", kind="slowloris", count=5, duration_s=8.0)
        await run_attack(rec, "127.0.0.1", port)
        nursery.cancel_scope.cancel()
    assert rec.opened == 5 and rec.open_at_end == 0
    assert rec.cut == 5  # 2 refused at once, 3 cut after the frame timeout
    assert rec.refusals == {"too many client connections": 2}
    assert sorted(rec.cut_s)[-1] == pytest.approx(2.0, abs=1.1)
    assert served == [0]


async def test_idle_clients_are_closed_by_the_attacker_when_it_ends(autojump_clock: trio.abc.Clock) -> None:
    served = [0]
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            trio.serve_tcp,
            lambda s: _server(s, cap=100, served=served, frame_timeout=2.0),
            0,
        )
        port = listeners[0].socket.getsockname()[1]
        rec = AttackRecord(node="node-1", kind="idle_clients", count=6, duration_s=3.0)
        await run_attack(rec, "127.0.0.1", port)
        with trio.fail_after(5):
            while served[0]:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert rec.opened == 6 and rec.cut == 0 and rec.open_at_end == 6
    assert rec.bytes_in > 0  # the odd ones got their StatusReply


def test_payments_cut_by_a_kill_are_left_out_of_the_latency_windows() -> None:
    from p2pnode.scenario.report import _cut_by_kill, _kill_times
    from p2pnode.scenario.state import Payment

    timeline = [
        {"action": "kill node-1", "started_s": 16.0, "done_s": 17.5},
        {"action": "restart node-1", "started_s": 19.0, "done_s": 21.0},
    ]
    kills = _kill_times(timeline)
    assert kills == [("node-1", 16.0, 17.5)]

    def pay(node: str, at: float, seconds: float, outcome: str) -> Payment:
        return Payment(
            tx="t", account=0, seq=0, node=node, kind="load", submitted_s=at, outcome=outcome, seconds=seconds
        )

    assert _cut_by_kill(pay("node-1", 15.9, 0.3, "error"), kills)  # in flight when the node died
    assert not _cut_by_kill(pay("node-1", 15.9, 0.05, "settled"), kills)  # settled: it counts
    assert not _cut_by_kill(pay("node-2", 15.9, 0.3, "error"), kills)  # another node's failure counts
    assert not _cut_by_kill(pay("node-1", 10.0, 0.3, "error"), kills)  # long before the kill
