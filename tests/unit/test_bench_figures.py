"""The figures of ``p2pnode bench`` a user reads: crypto limit, per-role counters, schedule lag, CPU timing.

Every expectation is worked out by hand in a comment, so that a wrong formula fails here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pnode.localnet import ClusterDir, NodeEntry
from p2pnode.tools import bench, bench_cost

# 1000 us proof check, 100 us signature check, 50 us signature.
COST = bench.CryptoCost(schnorr_verify=1000e-6, ed25519_sign=50e-6, ed25519_verify=100e-6, runs=1)


# == crypto model and plain-crypto limit ===================================================================
def test_per_payment_crypto_follows_the_committee() -> None:
    # 4 validators (f = 1, q = 3). Validator: proof + 3 other votes + own signature = 1000 + 300 + 50.
    assert bench.crypto_per_payment(COST, "validator", 4) == pytest.approx(1350e-6)
    # Full node: proof + one certificate's quorum of 3 signatures = 1000 + 300.
    assert bench.crypto_per_payment(COST, "full", 4) == pytest.approx(1300e-6)
    # 7 validators (f = 2, q = 5): validator 1000 + 6*100 + 50, full node 1000 + 5*100.
    assert bench.crypto_per_payment(COST, "validator", 7) == pytest.approx(1650e-6)
    assert bench.crypto_per_payment(COST, "full", 7) == pytest.approx(1500e-6)
    # 1 validator: no other vote to check.
    assert bench.crypto_per_payment(COST, "validator", 1) == pytest.approx(1050e-6)
    with pytest.raises(ValueError):
        bench.crypto_per_payment(COST, "observer", 4)


def test_crypto_limit_four_validators() -> None:
    # 4 validators x 1350 us = 5.4 ms of crypto per payment on the whole cluster; 2 cores: 2 / 5.4e-3.
    limit = bench.crypto_limit(COST, ["validator"] * 4, 4, 2)
    assert limit == pytest.approx(370.370, rel=1e-4)
    assert bench.crypto_limit(COST, ["validator"] * 4, 4, 1) == pytest.approx(limit / 2)


def test_crypto_limit_four_validators_and_twelve_full_nodes() -> None:
    # 4 x 1350 + 12 x 1300 = 5400 + 15600 = 21000 us per payment; 2 cores: 2 / 21e-3 = 95.238/s.
    roles = ["validator"] * 4 + ["full"] * 12
    assert bench.crypto_limit(COST, roles, 4, 2) == pytest.approx(95.238, rel=1e-4)
    with pytest.raises(ValueError):
        bench.crypto_limit(COST, [], 4, 2)
    with pytest.raises(ValueError):
        bench.crypto_limit(COST, roles, 4, 0)


def test_crypto_limit_shielded_adds_one_groth16_per_node() -> None:
    groth = bench.Groth16Cost(verify=20e-3, batch_per_proof=8e-3, batch=8, runs=10)
    cost = bench.CryptoCost(
        schnorr_verify=1000e-6, ed25519_sign=50e-6, ed25519_verify=100e-6, runs=1, groth16=groth
    )
    # Each of 4 validators: 20 ms + 1350 us = 21.35 ms; 4 of them 85.4 ms; 2 cores: 23.419/s.
    assert bench.crypto_limit(cost, ["validator"] * 4, 4, 2, shielded=True) == pytest.approx(23.419, rel=1e-4)
    with pytest.raises(ValueError):
        bench.crypto_limit(COST, ["validator"] * 4, 4, 2, shielded=True)  # no Groth16 figure


def test_settled_fraction_of_the_limit() -> None:
    assert bench.limit_fraction(100.0, 400.0) == pytest.approx(0.25)
    assert bench.limit_fraction(500.0, 400.0) == pytest.approx(1.25)  # batching can beat the model
    assert bench.limit_fraction(None, 400.0) is None
    assert bench.limit_fraction(100.0, None) is None


def test_cores_is_the_affinity() -> None:
    import os

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert bench.cores() == expected


# == timing in thread CPU time =============================================================================
def test_cpu_samples_use_thread_cpu_time_and_report_the_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each call is bracketed by two readings; these make samples of 300, 100, 200, 500, 400 ns.
    readings: Iterator[int] = iter([0, 300, 1000, 1100, 2000, 2200, 3000, 3500, 4000, 4400])
    monkeypatch.setattr(time, "thread_time_ns", lambda: next(readings))
    spread = bench_cost.cpu_samples(lambda: None, 5)
    assert spread.samples == 5
    assert spread.median == pytest.approx(300e-9)
    assert [spread.min, spread.max] == pytest.approx([100e-9, 500e-9])
    # Nearest rank: p10 of 5 is rank 1, p90 rank 5.
    assert [spread.p10, spread.p90] == pytest.approx([100e-9, 500e-9])
    assert spread.to_json(1e9) == {"median": 300.0, "p10": 100.0, "p90": 500.0, "min": 100.0, "max": 500.0,
                                   "samples": 5}  # fmt: skip


def test_measure_crypto_reports_median_and_spread() -> None:
    cost = bench.measure_crypto(runs=5)
    doc = cost.to_json()
    assert doc["clock"] == "thread_cpu"
    for name in bench_cost.PRIMITIVES:
        s = cost.spread[name]
        assert s.samples == 5 and 0 < s.min <= s.p10 <= s.median <= s.p90 <= s.max
        assert getattr(cost, name) == s.median
        assert doc["spread_us"][name]["median"] == pytest.approx(s.median * 1e6, abs=1e-3)


# == per-role counters =====================================================================================
def counts(**kw: int | None) -> bench.NodeCounts:
    return bench.NodeCounts(**kw)


FULL_COUNTS: dict[str, Any] = {
    "rx_frames": 0,
    "rx_messages": 0,
    "rx_bytes": 0,
    "gossip_received": 0,
    "gossip_duplicate": 0,
    "proofs": 0,
    "signatures": 0,
}


def test_node_counts_from_a_status_reply_and_an_old_node() -> None:
    info = {
        "counters": {"rx_frames": 120, "rx_bytes": 54_000, "frames_rejected": 0},
        "gossip": {"received": 90, "duplicate": 30},
        "verified": {"proofs": 10, "proof_batches": 4, "signatures": 40},
    }
    assert bench.NodeCounts.from_status(info) == counts(
        rx_frames=120, rx_bytes=54_000, gossip_received=90, gossip_duplicate=30, proofs=10, signatures=40
    )
    old = bench.NodeCounts.from_status({"counters": {"frames_rejected": 0}, "gossip": {"received": 5}})
    assert old == counts(gossip_received=5)  # the rest unknown, not zero
    assert bench.NodeCounts.from_status({"counters": {"rx_frames": True}}).rx_frames is None


def test_counts_delta_needs_both_snapshots_and_a_monotonic_counter() -> None:
    before = {"a": counts(rx_frames=10, proofs=5), "b": counts(rx_frames=50), "c": None}
    after = {"a": counts(rx_frames=25, proofs=7), "b": counts(rx_frames=3), "c": counts(rx_frames=1)}
    d = bench.counts_delta(before, after)
    assert d["a"] == counts(rx_frames=15, proofs=2)
    assert d["b"] == counts()  # went backwards: restarted, so unknown
    assert d["c"] is None


def test_role_figures_divide_per_node_and_per_payment() -> None:
    roles = {"v0": "validator", "v1": "validator", "f0": "full"}
    deltas = {
        "v0": counts(**FULL_COUNTS | dict(rx_frames=800, rx_bytes=400_000, proofs=100, signatures=400)),
        "v1": counts(**FULL_COUNTS | dict(rx_frames=1000, rx_bytes=600_000, proofs=100, signatures=300)),
        "f0": counts(**FULL_COUNTS | dict(rx_frames=150, rx_bytes=90_000, proofs=100, signatures=300)),
    }
    cpu_s = {"v0": 2.0, "v1": 3.0, "f0": 0.5}
    figures = bench.role_figures(roles, deltas, cpu_s, settled=100)
    v, f = figures["validator"], figures["full"]
    # Validators: (800 + 1000) frames / (2 nodes x 100 payments) = 9; (400 000 + 600 000) / 200 = 5000 B.
    assert v.nodes == 2
    assert v.rx_frames_per_payment == pytest.approx(9.0)
    assert v.rx_bytes_per_payment == pytest.approx(5000.0)
    assert v.proofs_per_payment == pytest.approx(1.0)
    assert v.signatures_per_payment == pytest.approx(3.5)  # 700 / 200
    # (100 + 400 + 100 + 300) verifications / (2 + 3) CPU seconds = 180 per core-second.
    assert v.verifications_per_core_s == pytest.approx(180.0)
    # Full node: 150 / 100 = 1.5 frames, 900 B, (100 + 300) / 0.5 = 800 per core-second.
    assert (f.nodes, f.rx_frames_per_payment, f.rx_bytes_per_payment) == (1, 1.5, 900.0)
    assert f.verifications_per_core_s == pytest.approx(800.0)


def test_role_figures_say_unknown_rather_than_guess() -> None:
    roles = {"v0": "validator", "v1": "validator"}
    deltas = {
        "v0": counts(**FULL_COUNTS | {"rx_frames": 800, "proofs": 100, "signatures": 300}),
        "v1": counts(gossip_received=3, proofs=100, signatures=300),  # an old node: no rx counters
    }
    v = bench.role_figures(roles, deltas, {"v0": 1.0, "v1": None}, settled=100)["validator"]
    assert v.rx_frames_per_payment is None and v.rx_bytes_per_payment is None
    assert v.proofs_per_payment == pytest.approx(1.0)
    assert v.verifications_per_core_s is None  # one node's CPU unknown
    none_settled = bench.role_figures(roles, deltas, {"v0": 1.0, "v1": 1.0}, settled=0)["validator"]
    assert none_settled.proofs_per_payment is None
    assert none_settled.verifications_per_core_s == pytest.approx(400.0)  # 800 / 2 s, payments aside


# == open loop: schedule lag and coordinated omission ======================================================
def test_latency_counts_from_the_scheduled_send() -> None:
    # 10/s: scheduled at 0, 100, 200, 300, 400 ms. The third waits 1 s for the cluster; the fourth and
    # fifth go right after it. Every payment then takes 50 ms to settle.
    scheduled = [0.0, 0.1, 0.2, 0.3, 0.4]
    sent = [0.0, 0.1, 1.2, 1.25, 1.3]
    settled = [t + 0.05 for t in sent]
    from_schedule, service = bench.open_loop_latencies(scheduled, sent, settled)
    assert from_schedule == pytest.approx([0.05, 0.05, 1.05, 1.0, 0.95])
    assert service == pytest.approx([0.05] * 5)  # what the actual-send latency would have hidden
    s = bench.schedule_report(10.0, scheduled, sent)
    # Lags 0, 0, 1.0, 0.95, 0.9 s; nearest-rank p99 of 5 is the largest.
    assert s.lag_max_s == pytest.approx(1.0) and s.lag_p99_s == pytest.approx(1.0)
    # 5 sent by 1.3 s, + one period: 5 / 1.4 = 3.57/s of 10 asked.
    assert s.sent_per_s == pytest.approx(5 / 1.4)
    assert not s.kept
    with pytest.raises(ValueError):
        bench.open_loop_latencies(scheduled, sent, settled[:-1])


def test_schedule_kept_on_time_and_its_thresholds() -> None:
    scheduled = [k / 100 for k in range(200)]  # 200 payments at 100/s
    on_time = bench.schedule_report(100.0, scheduled, [t + 0.002 for t in scheduled])
    # Last send at 1.992 s: 200 / (1.992 + 0.01) = 99.9/s >= 95; lag 2 ms.
    assert on_time.kept and on_time.sent_per_s == pytest.approx(200 / 2.002)
    assert on_time.lag_p99_s == pytest.approx(0.002)
    # Two payments 150 ms late: nearest-rank p99 of 200 is rank 198, still on time: kept.
    two = list(scheduled)
    two[50] += 0.15
    two[60] += 0.15
    assert bench.schedule_report(100.0, scheduled, two).kept
    # Three late: rank 198 is a 150 ms lag, over 100 ms: not kept, though the rate held.
    three = list(two)
    three[70] += 0.15
    s = bench.schedule_report(100.0, scheduled, three)
    assert s.lag_p99_s == pytest.approx(0.15) and s.sent_per_s == pytest.approx(100.0)
    assert not s.kept
    # On time but too slow: the last of 200 payments at 100/s sent at 2.2 s (90.9/s).
    slow = [t * 1.1 for t in scheduled]
    s = bench.schedule_report(100.0, [t * 1.1 - 0.0 for t in scheduled], slow)
    assert s.lag_p99_s == 0.0 and not s.kept
    assert not bench.schedule_report(100.0, [], []).kept


# == quiet before timing ===================================================================================
async def test_wait_quiet_waits_for_the_cpu_counters_to_stop(autojump_clock: trio.testing.MockClock) -> None:
    cpu = {"a": 10.0, "b": 3.0}
    reads = 0

    def read() -> dict[str, float | None]:
        nonlocal reads
        reads += 1
        if reads <= 4:  # still draining: 0.3 s of CPU per 0.5 s interval
            cpu["a"] += 0.3
        else:
            cpu["a"] += 0.01  # 2 % of a core: quiet
        return dict(cpu)

    t0 = trio.current_time()
    assert await bench.wait_quiet(read) is True
    # Reads at 0, 0.5, 1.0, 1.5 s grow 0.3 s each; the one at 2.0 s grew 0.01 s (<= 4 % of 0.5 s).
    assert reads == 5 and trio.current_time() - t0 == pytest.approx(2.0)

    def busy() -> dict[str, float | None]:
        cpu["b"] += 0.1
        return dict(cpu)

    assert await bench.wait_quiet(busy, timeout=3.0) is False
    assert await bench.wait_quiet(lambda: {"a": None}) is None


# == the document ==========================================================================================
def cluster_of(tmp_path: Path, validators: int, full: int) -> ClusterDir:
    nodes = [
        NodeEntry(
            name=f"node-{i}",
            role="validator" if i < validators else "full",
            host="127.0.0.1",
            port=7600 + i,
            node_id="00" * 32,
            config=tmp_path / f"node-{i}.toml",
            log=tmp_path / "logs" / f"node-{i}.log",
        )
        for i in range(validators + full)
    ]
    return ClusterDir(directory=tmp_path, chain_id=b"\x07" * 32, nodes=tuple(nodes), accounts=())


def test_document_and_text_carry_the_new_figures(tmp_path: Path) -> None:
    cluster = cluster_of(tmp_path, 4, 1)
    names = [n.name for n in cluster.nodes]
    scheduled = [k / 100 for k in range(10)]
    sent = [t + 0.5 for t in scheduled]  # half a second behind throughout
    result = bench.BenchResult(
        planned=10,
        settled=10,
        latencies_s=[t + 0.01 - s for s, t in zip(scheduled, sent, strict=True)],
        service_s=[0.01] * 10,
        scheduled_s=scheduled,
        sent_s=sent,
        duration_s=1.0,
        schedule_lag_s=0.5,
        roots={n: "ab" * 32 for n in names},
        cpu_before={n: 1.0 for n in names},
        cpu_after={n: 2.0 for n in names},
        counts_before={n: bench.NodeCounts(**FULL_COUNTS) for n in names[:4]} | {"node-4": None},
        counts_after={
            n: bench.NodeCounts(
                **FULL_COUNTS
                | {"rx_frames": 100, "rx_messages": 150, "rx_bytes": 20480, "proofs": 10, "signatures": 40}
            )
            for n in names
        },  # fmt: skip
        quiet=True,
    )
    opts = bench.BenchOptions(count=10, rate=100.0)
    doc = bench.build_document(cluster, opts, result, COST, None, cpus=2)
    assert doc["version"] == 2
    # 4 x 1350 + 1 x 1300 = 6700 us; 2 cores: 298.5/s; 10/s settled is 3.35 % of it.
    assert doc["crypto_limit"] == {
        "cores": 2,
        "crypto_per_payment_ms": 6.7,
        "payments_per_s": 298.51,
        "settled_fraction": 0.0335,
    }
    assert doc["schedule_kept"] is False and doc["schedule"]["lag_max_ms"] == 500.0
    assert doc["client_latency"]["p50"] == pytest.approx(510.0)
    assert doc["service_latency"]["p50"] == pytest.approx(10.0)
    assert doc["roles"]["validator"]["rx_frames_per_payment"] == 10.0
    assert doc["roles"]["validator"]["verifications_per_core_s"] == 50.0  # 4 x 50 / 4 x 1 s
    assert doc["roles"]["full"]["rx_frames_per_payment"] is None  # its first snapshot is missing
    text = bench.render_document(doc, None)
    lines = text.splitlines()
    assert any(line.startswith("SCHEDULE NOT KEPT") for line in lines)
    assert "schedule lag (actual - scheduled send): p99 500.000 ms, max 500.000 ms" in text
    assert "plain-crypto limit: 298.5 payments/s = 2 cores / 6.700 ms" in text
    assert "settled/s is 3.4% of it" in text
    full_row = next(line for line in lines if line.startswith("full "))
    assert full_row.split()[1:] == ["1", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]
    validator_row = next(line for line in lines if line.startswith("validator "))
    assert validator_row.split()[1:] == ["4", "15.00", "10.00", "2.00", "0.00", "1.00", "4.00", "50.0"]

    closed = bench.build_document(cluster, bench.BenchOptions(count=10), result, COST, None, cpus=2)
    assert closed["schedule"] is None and closed["schedule_kept"] is None
    assert "SCHEDULE" not in bench.render_document(closed, None)
