"""``p2pnode latency`` on a hand-built log set whose every number is known, and the pure parts of bench.

The log set: 4 nodes (node-0..2 validators, node-3 a full node), 3 payments. A and B settle everywhere;
C is voted for by node-2 only and rejected by node-0, so it never gets a certificate. Times below are in
microseconds after BASE; each payment's submit time is its ``order_submitted``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pnode.cli import bench as bench_cli
from p2pnode.cli import latency as latency_cli
from p2pnode.core.shielded import shielded_digest
from p2pnode.crypto import SpendingKey, hash256
from p2pnode.localnet import AccountEntry, ClusterDir, NodeEntry
from p2pnode.tools import bench, latency, latency_plot
from p2pnode.tools.latency import Report, analyze, percentile
from p2pnode.wire.messages import (
    SHIELD,
    AccountReply,
    GetAccount,
    Message,
    Order,
    SettledReply,
    ShieldedOrder,
    ShieldedTransfer,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    SubmitReply,
    SubmitShielded,
    Transfer,
    WaitSettled,
)
from p2pnode.wire.types import Address, Amount, ChainId, Seq

BASE = 1_700_000_000_000_000_000
TX_A, TX_B, TX_C = "aa" * 32, "bb" * 32, "cc" * 32
IDS = {f"node-{i}": f"{i}" * 16 for i in range(4)}


def ev(node: str, us: int, event: str, **fields: Any) -> str:
    return json.dumps(
        {
            "ts_ns": BASE + us * 1000,
            "level": "info",
            "event": event,
            "node": node,
            "node_id": IDS[node],
            **fields,
        }
    )


def verified(node: str, us: int, tx: str) -> str:
    return ev(node, us, "proof_verified", tx=tx, ok=True, duration_us=800, batch=1)


def build_logs(shift_us: dict[str, int] | None = None) -> dict[str, list[str]]:
    """The 4 node logs; ``shift_us`` moves one node's clock (every timestamp it writes)."""
    logs: dict[str, list[str]] = {
        n: [ev(n, 0, "node_started", chain_id="00", listen="127.0.0.1:1", role="validator")] for n in IDS
    }
    logs["node-3"][0] = ev("node-3", 0, "node_started", chain_id="00", listen="127.0.0.1:4", role="full")

    def add(node: str, line: str) -> None:
        logs[node].append(line)

    # Payment A, submitted at node-0 at t = 0.
    add("node-0", ev("node-0", 0, "order_submitted", tx=TX_A, sender="01" * 20, seq=0, amount=5))
    for node, t, hops in (("node-0", 100, 0), ("node-1", 500, 1), ("node-2", 700, 1), ("node-3", 900, 2)):
        add(node, ev(node, t, "order_received", tx=TX_A, hops=hops, peer="client" if hops == 0 else "x"))
    for node, t in (("node-0", 1000), ("node-1", 1500), ("node-2", 1900), ("node-3", 2000)):
        add(node, verified(node, t, TX_A))
    for node, t in (("node-0", 1200), ("node-1", 1700), ("node-2", 2100)):
        add(node, ev(node, t, "vote_sent", tx=TX_A, seq=0, sender="01" * 20))
    add("node-1", ev("node-1", 2000, "vote_received", tx=TX_A, validator=IDS["node-0"], hops=1))
    add("node-0", ev("node-0", 3000, "certificate_formed", tx=TX_A, votes=3))
    for node, t, hops in (("node-1", 4000, 1), ("node-2", 4100, 1), ("node-3", 4500, 2)):
        add(node, ev(node, t, "certificate_received", tx=TX_A, hops=hops, peer="x"))
    for i, (node, t) in enumerate((("node-0", 3500), ("node-1", 4200), ("node-2", 4600), ("node-3", 5000))):
        add(
            node,
            ev(node, t, "certificate_applied", tx=TX_A, sender="01", seq=0, amount=5, root="ab", applied=i),
        )

    # Payment B, submitted at node-1 at t = 10 ms.
    add("node-1", ev("node-1", 10_000, "order_submitted", tx=TX_B, sender="02" * 20, seq=0, amount=5))
    for node, t, hops in (
        ("node-1", 10_200, 0),
        ("node-0", 10_600, 1),
        ("node-2", 10_800, 1),
        ("node-3", 11_000, 2),
    ):
        add(node, ev(node, t, "order_received", tx=TX_B, hops=hops, peer="x"))
    for node, t in (("node-1", 11_000), ("node-0", 11_600), ("node-2", 12_000), ("node-3", 12_400)):
        add(node, verified(node, t, TX_B))
    for node, t in (("node-1", 11_300), ("node-0", 11_800), ("node-2", 12_200)):
        add(node, ev(node, t, "vote_sent", tx=TX_B, seq=0, sender="02" * 20))
    add("node-1", ev("node-1", 13_000, "certificate_formed", tx=TX_B, votes=3))
    for node, t, hops in (("node-0", 13_500, 1), ("node-2", 13_600, 1), ("node-3", 13_900, 2)):
        add(node, ev(node, t, "certificate_received", tx=TX_B, hops=hops, peer="x"))
    for node, t in (("node-1", 13_400), ("node-0", 14_000), ("node-2", 14_400), ("node-3", 15_200)):
        add(
            node,
            ev(node, t, "certificate_applied", tx=TX_B, sender="02", seq=0, amount=5, root="cd", applied=2),
        )

    # Payment C, submitted at node-2 at t = 20 ms; only node-2 votes, node-0 rejects it.
    add("node-2", ev("node-2", 20_000, "order_submitted", tx=TX_C, sender="03" * 20, seq=0, amount=5))
    for node, t, hops in (
        ("node-2", 20_300, 0),
        ("node-0", 20_500, 1),
        ("node-1", 20_900, 1),
        ("node-3", 21_500, 2),
    ):
        add(node, ev(node, t, "order_received", tx=TX_C, hops=hops, peer="x"))
    add("node-2", verified("node-2", 21_000, TX_C))
    add("node-3", verified("node-3", 22_000, TX_C))
    add("node-2", ev("node-2", 21_200, "vote_sent", tx=TX_C, seq=0, sender="03" * 20))
    add(
        "node-0",
        ev(
            "node-0", 20_600, "message_rejected", reason="insufficient funds", kind="order", peer="x", tx=TX_C
        ),
    )
    add("node-1", ev("node-1", 20_950, "message_rejected", reason="bad frame", kind="frame", peer="y"))

    if shift_us:
        for node, shift in shift_us.items():
            shifted = []
            for line in logs[node]:
                obj = json.loads(line)
                obj["ts_ns"] += shift * 1000
                shifted.append(json.dumps(obj))
            logs[node] = shifted
    return {f"/logs/{n}.log": lines for n, lines in logs.items()}


def stage(report: Report, name: str) -> tuple[int, float | None, float | None, float | None, float | None]:
    s = report.stages[name]
    return (s.count, s.p50, s.p90, s.p99, s.max)


# == percentiles ===========================================================================================
@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 90, 90),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 100, 100),
        (list(range(1, 101)), 0, 1),
        (list(range(1, 1001)), 99.9, 999),  # exact rank arithmetic: not 1000
        ([7], 99, 7),
        ([1, 2], 50, 1),
        ([1, 2, 3], 50, 2),
        ([1, 2, 3, 4], 50, 2),
    ],
)
def test_percentile_nearest_rank(values: list[int], p: float, expected: int) -> None:
    assert percentile(values, p) == expected


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


# == the known log set =====================================================================================
def test_stages_match_hand_computed_values() -> None:
    r = analyze(build_logs())
    assert r.nodes == ("node-0", "node-1", "node-2", "node-3")
    assert (r.payments, r.settled, r.unanchored, r.malformed) == (3, 2, 0, 0)
    # received, 12 samples: .1 .2 .3 .5 .5 .6 .7 .8 .9 .9 1.0 1.5 -> ranks 6, 11, 12
    assert stage(r, "received") == (12, 0.6, 1.0, 1.5, 1.5)
    # verified, 10 samples: 1.0 1.0 1.0 1.5 1.6 1.9 2.0 2.0 2.0 2.4 -> ranks 5, 9, 10
    assert stage(r, "verified") == (10, 1.6, 2.0, 2.4, 2.4)
    assert stage(r, "first_vote") == (3, 1.2, 1.3, 1.3, 1.3)
    assert stage(r, "certificate") == (2, 3.0, 3.0, 3.0, 3.0)
    assert stage(r, "applied_first") == (2, 3.4, 3.5, 3.5, 3.5)
    # 4 nodes: the median node is the 2nd to apply.
    assert stage(r, "applied_median") == (2, 4.0, 4.2, 4.2, 4.2)
    assert stage(r, "applied_last") == (2, 5.0, 5.2, 5.2, 5.2)
    assert r.skew == () and r.warnings == ()


def test_per_node_breakdown() -> None:
    r = analyze(build_logs())
    by = {n.node: n for n in r.per_node}
    assert by["node-3"].role == "full" and by["node-0"].role == "validator"
    n0 = by["node-0"]
    assert (n0.orders, n0.applied) == (3, 2)
    assert (n0.received.count, n0.received.p50, n0.received.max) == (3, 0.5, 0.6)
    assert (n0.applied_ms.p50, n0.applied_ms.max) == (3.5, 4.0)
    assert (n0.verify_us.unit, n0.verify_us.count, n0.verify_us.p50) == ("us", 2, 800.0)
    assert n0.batch_mean == 1.0
    n3 = by["node-3"]
    assert (n3.verified.count, n3.verified.p50, n3.verified.max) == (3, 2.0, 2.4)
    assert (n3.applied_ms.p50, n3.applied_ms.max) == (5.0, 5.2)


def test_hops_and_rejections() -> None:
    r = analyze(build_logs())
    assert r.hops == {"order": {0: 3, 1: 6, 2: 3}, "vote": {1: 1}, "certificate": {1: 4, 2: 2}}
    assert [(x.reason, x.kind, x.count) for x in r.rejected] == [
        ("bad frame", "frame", 1),
        ("insufficient funds", "order", 1),
    ]


def test_unsettled_payment_reports_its_last_stage() -> None:
    r = analyze(build_logs())
    assert len(r.unsettled) == 1
    u = r.unsettled[0]
    assert (u.tx, u.last_stage, u.applied_nodes, u.nodes) == (TX_C, "vote_sent", 0, 4)
    assert u.missing == ("node-0", "node-1", "node-2", "node-3")
    assert u.rejections == {"insufficient funds": 1}
    assert "not applied on every node: 1 payments" in latency.render_report(r)


def test_partially_applied_payment_is_unsettled_with_missing_nodes() -> None:
    logs = build_logs()
    logs["/logs/node-3.log"] = [
        line for line in logs["/logs/node-3.log"] if "certificate_applied" not in line
    ]
    r = analyze(logs)
    assert r.settled == 0
    assert [(u.tx, u.last_stage, u.applied_nodes, u.missing) for u in r.unsettled[:2]] == [
        (TX_A, "certificate_applied", 3, ("node-3",)),
        (TX_B, "certificate_applied", 3, ("node-3",)),
    ]
    assert r.stages["applied_last"].count == 0  # the 4th node never applied anything
    assert r.stages["applied_median"].count == 2


def test_truncated_and_garbage_lines_are_counted_and_skipped() -> None:
    logs = build_logs()
    logs["/logs/node-0.log"] += [
        '{"ts_ns": 17000000000000000',  # cut off mid-write
        "not json at all",
        '["a", "list"]',
        '{"ts_ns": "12", "event": "order_received", "tx": "ee"}',  # ts_ns not an int
        '{"ts_ns": 12, "event": "order_received"}',  # payment event without tx
        "\ufffd\ufffd\x00",
        "",  # blank lines are not lines
    ]
    r = analyze(logs)
    assert r.malformed == 6
    assert stage(r, "received") == stage(analyze(build_logs()), "received")
    assert "skipped 6 malformed lines" in latency.render_report(r)


def test_missing_node_log() -> None:
    logs = build_logs()
    del logs["/logs/node-3.log"]
    r = analyze(logs)
    assert r.nodes == ("node-0", "node-1", "node-2")
    assert r.settled == 2
    # 3 nodes: median node = 2nd, last = 3rd. A applied at 3.5, 4.2, 4.6; B at 3.4, 4.0, 4.4.
    assert stage(r, "applied_median") == (2, 4.0, 4.2, 4.2, 4.2)
    assert stage(r, "applied_last") == (2, 4.4, 4.6, 4.6, 4.6)


def test_file_with_only_garbage_is_warned_about() -> None:
    logs = build_logs()
    logs["/logs/node-4.log"] = ["\x00\x01 garbage"]
    r = analyze(logs)
    assert r.malformed == 1 and len(r.nodes) == 4
    assert any("node-4.log: no valid log lines" in w for w in r.warnings)


def test_only_some_events_and_no_submit() -> None:
    # Only order_received and certificate_applied were kept: the anchor falls back to order_received.
    logs = {
        k: [x for x in v if '"order_received"' in x or '"certificate_applied"' in x]
        for k, v in build_logs().items()
    }
    r = analyze(logs)
    assert r.unanchored == 0
    # A's earliest order_received is node-0 at 0.1 ms: applied at first node = 3.5 - 0.1.
    assert r.stages["applied_first"].max == 3.4
    assert r.stages["verified"].count == 0 and r.stages["first_vote"].count == 0


def test_unanchored_payment() -> None:
    logs = {
        "/l/n.log": [
            ev("node-0", 5, "certificate_applied", tx=TX_A, sender="0", seq=0, amount=1, root="", applied=1)
        ]
    }
    r = analyze(logs)
    assert (r.payments, r.settled, r.unanchored) == (1, 1, 1)
    assert r.stages["applied_first"].count == 0
    assert any("no order_submitted" in w for w in r.warnings)


def test_tx_filter_restricts_payments() -> None:
    r = analyze(build_logs(), txs=[TX_A.upper()])
    assert (r.payments, r.settled) == (1, 1)
    assert len(r.nodes) == 4
    # The untagged "bad frame" rejection (t = 20.95 ms) lies outside A's time span.
    assert r.rejected == ()


def test_line_without_node_field_uses_file_stem() -> None:
    line = json.dumps({"ts_ns": BASE, "event": "node_ready", "level": "info"})
    assert analyze({"/x/node-9.log": [line]}).nodes == ("node-9",)


# == clock skew ============================================================================================
def test_skew_detected_when_a_clock_runs_behind() -> None:
    r = analyze(build_logs(shift_us={"node-3": -5_000}))
    bad = {(s.node, s.reference) for s in r.skew}
    assert ("node-3", "node-0") in bad and ("node-3", "node-1") in bad and ("node-3", "node-2") in bad
    worst = {(s.node, s.reference): s for s in r.skew}[("node-3", "node-0")]
    # node-3 received A 0.9 ms after submit on its own clock minus 5 ms; its certificate 4.5 - 3.0 - 5.
    assert worst.worst_ms == -4.1 and worst.violations == 2
    assert all(s.node == "node-3" for s in r.skew)
    assert any("clock skew" in w and "node-3" in w for w in r.warnings)


def test_small_offsets_are_tolerated() -> None:
    # 0.95 ms backwards is within the 1 ms tolerance for node-3 receiving A (0.9 - 0.95 = -0.05 ms).
    r = analyze(build_logs(shift_us={"node-3": -950}))
    assert r.skew == ()


def test_vote_causality_uses_node_ids() -> None:
    # node-1 says it received node-0's vote on A 2.0 ms after submit; node-0 sent it at 1.2 ms.
    # Moving node-0's clock 3 ms ahead puts the send after the receipt.
    r = analyze(build_logs(shift_us={"node-0": 3_000}))
    pairs = {(s.node, s.reference) for s in r.skew}
    assert ("node-1", "node-0") in pairs


# == output ================================================================================================
def write_logs(tmp_path: Path, logs: dict[str, list[str]]) -> list[Path]:
    paths = []
    for name, lines in logs.items():
        p = tmp_path / Path(name).name
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    latency_cli.add_latency_args(parser)
    return parser.parse_args(argv)


def test_json_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_logs(tmp_path, build_logs())
    assert latency_cli.cmd_latency(parse_args([*map(str, paths), "--json"])) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == latency.JSON_VERSION
    assert doc["stages"]["applied_median"] == {
        "unit": "ms",
        "count": 2,
        "p50": 4.0,
        "p90": 4.2,
        "p99": 4.2,
        "max": 4.2,
    }
    assert doc["hops"]["order"] == {"0": 3, "1": 6, "2": 3}
    again = Report.from_json(doc)
    assert again == analyze({str(p): p.read_text().splitlines() for p in paths})
    assert again.to_json() == doc


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_logs(tmp_path, build_logs())
    assert latency_cli.cmd_latency(parse_args([str(p) for p in paths])) == 0
    out = capsys.readouterr().out
    assert "applied, median node" in out and "node-3" in out and "insufficient funds" in out


def test_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert latency_cli.cmd_latency(parse_args([str(tmp_path / "nope.log")])) == 2
    assert "no log files" in capsys.readouterr().err


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = write_logs(tmp_path, build_logs())
    out = tmp_path / "latency.png"
    assert latency_cli.cmd_latency(parse_args([*map(str, paths), "--plot", str(out)])) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_plot_with_no_payments(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "empty.png"
    latency.write_plot(analyze({"/l/node-0.log": [ev("node-0", 0, "node_ready")]}), out)
    assert out.read_bytes().startswith(b"\x89PNG")


def test_tail_breakdown_adds_up_to_the_mean_time_until_the_last_node() -> None:
    r = analyze(build_logs())
    label, count, means = latency_plot.tail_groups(r.paths)[0]
    assert (label, count) == ("all payments", 2)
    mean_last = sum(r.samples["applied_last"]) / len(r.samples["applied_last"])
    assert sum(means) == pytest.approx(mean_last)
    assert all(w >= 0 for w in means)


# == bench: pure parts =====================================================================================
PROC_STAT = "4242 (p2pnode run) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 3 0 100 0 0"


def test_parse_proc_stat_counts_fields_after_the_last_paren() -> None:
    # utime = 250 ticks, stime = 50 ticks; the command name holds a space and a ")".
    assert bench.parse_proc_stat(PROC_STAT, 100) == 3.0
    with pytest.raises(ValueError):
        bench.parse_proc_stat("garbage", 100)


def test_cpu_per_payment_from_two_snapshots() -> None:
    before = {"node-0": 10.0, "node-1": 5.0, "node-2": 7.0, "node-3": None}
    after = {"node-0": 12.5, "node-1": 6.0, "node-2": 1.0, "node-3": 4.0, "node-4": 1.0}
    assert bench.cpu_per_payment(before, after, 500) == {
        "node-0": 0.005,
        "node-1": 0.002,
        "node-2": None,  # went backwards: restarted
        "node-3": None,  # no first snapshot
        "node-4": None,  # not in the first snapshot
    }
    assert bench.cpu_per_payment({"a": 1.0}, {"a": 2.0}, 0) == {"a": None}


def test_crypto_model_and_overhead_ratio() -> None:
    cost = bench.CryptoCost(schnorr_verify=700e-6, ed25519_sign=20e-6, ed25519_verify=50e-6, runs=1)
    # 4 validators, quorum 3: full node = 700 + 3*50 = 850 us (one certificate's signatures); a validator
    # checks the 3 other votes and signs its own: 700 + 3*50 + 20 = 870 us.
    assert bench.crypto_per_payment(cost, "full", 4) == pytest.approx(850e-6)
    assert bench.crypto_per_payment(cost, "validator", 4) == pytest.approx(870e-6)
    crypto = {"v": 920e-6, "f": 900e-6, "gone": 900e-6}
    per_node, overall = bench.overhead_ratios({"v": 9.2e-3, "f": 2.7e-3, "gone": None}, crypto)
    assert per_node["v"] == pytest.approx(10.0)
    assert per_node["f"] == pytest.approx(3.0)
    assert per_node["gone"] is None
    # Ratio of means over the nodes that have both: (9.2 + 2.7) / 2 ms over (920 + 900) / 2 us.
    assert overall == pytest.approx((9.2e-3 + 2.7e-3) / (920e-6 + 900e-6))
    assert bench.overhead_ratios({"x": None}, {"x": 1.0}) == ({"x": None}, None)


def test_split_count() -> None:
    assert bench.split_count(10, 3) == [4, 3, 3]
    assert bench.split_count(2, 4) == [1, 1, 0, 0]
    assert sum(bench.split_count(1000, 7)) == 1000


def test_measure_crypto_is_positive() -> None:
    cost = bench.measure_crypto(runs=3)
    assert cost.schnorr_verify > 0 and cost.ed25519_sign > 0 and cost.ed25519_verify > 0


def test_bench_shares_the_percentile_implementation() -> None:
    assert bench.Stats is latency.Stats


# == bench: a whole run against in-process fake nodes ======================================================
CHAIN = b"\x07" * 32


def stub_make_order(key: SpendingKey, chain_id: bytes, recipient: bytes, amount: int, seq: int) -> Order:
    transfer = Transfer(chain_id=chain_id, sender=key.address, recipient=recipient, amount=amount, seq=seq)
    return Order(transfer=transfer, sender_key=key.public, proof=bytes(96))


def stub_digest(transfer: Transfer) -> bytes:
    return hash256(b"test/transfer", transfer.encode())


class FakeCluster:
    """Nodes sharing one ledger; an order settles 3 ms (virtual) after submission, on every node at once.

    It refuses an order whose seq is not the sender's next as seen by the receiving node, which is what a
    bench that broke the per-account ordering would run into.
    """

    def __init__(self, refuse_seq: int | None = None) -> None:
        self.next_seq: dict[bytes, int] = {}
        self.settled: dict[bytes, trio.Event] = {}
        self.refuse_seq = refuse_seq
        self.in_flight = 0
        self.max_in_flight = 0
        self.submitted: list[tuple[str, int]] = []
        self.nursery: trio.Nursery | None = None
        self.connections = 0
        self.shielded = 0

    def event(self, digest: bytes) -> trio.Event:
        return self.settled.setdefault(digest, trio.Event())

    async def settle_later(self, t: Transfer, digest: bytes) -> None:
        await trio.sleep(0.003)
        self.next_seq[t.sender] = t.seq + 1
        self.in_flight -= 1
        self.event(digest).set()

    async def connect(self, host: str, port: int) -> FakeConn:
        self.connections += 1
        return FakeConn(self, f"{host}:{port}")


class FakeConn:
    def __init__(self, cluster: FakeCluster, name: str) -> None:
        self.cluster, self.name = cluster, name

    async def call(self, request: Message) -> Message:
        c = self.cluster
        await trio.sleep(0.0001)
        if isinstance(request, StatusRequest):
            return StatusReply(info={"root": b"\x01" * 32, "chain_id": CHAIN.hex()})
        if isinstance(request, GetAccount):
            return AccountReply(address=request.address, balance=10**6, next_seq=0)
        if isinstance(request, (SubmitOrder, SubmitShielded)):
            digest: bytes
            if isinstance(request, SubmitShielded):
                tx = request.order.tx
                t = Transfer(
                    chain_id=tx.chain_id,
                    sender=tx.account,
                    recipient=tx.account,
                    amount=Amount(1),
                    seq=tx.seq,
                )
                digest = shielded_digest(tx)
                c.shielded += 1
            else:
                t = request.order.transfer
                digest = stub_digest(t)
            if t.seq != c.next_seq.get(t.sender, 0) or t.seq == c.refuse_seq:
                return SubmitReply(digest=digest, accepted=False, error=f"seq {t.seq} is not next")
            c.submitted.append((self.name, t.seq))
            c.in_flight += 1
            c.max_in_flight = max(c.max_in_flight, c.in_flight)
            assert c.nursery is not None
            c.nursery.start_soon(c.settle_later, t, digest)
            return SubmitReply(digest=digest, accepted=True, error="")
        if isinstance(request, WaitSettled):
            with trio.move_on_after(request.wait_ms / 1000):
                await c.event(request.digest).wait()
            done = c.event(request.digest).is_set()
            return SettledReply(digest=request.digest, settled=done, root=b"\x01" * 32, applied=0)
        raise AssertionError(request)

    async def aclose(self) -> None:
        pass


def make_cluster(tmp_path: Path, accounts: int = 3, nodes: int = 2) -> ClusterDir:
    entries = []
    for i in range(accounts):
        key = SpendingKey(1000 + i)
        p = tmp_path / "accounts" / f"account-{i}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            json.dumps(
                {
                    "address": key.address.hex(),
                    "spending_key": key.to_bytes().hex(),
                    "public": key.public.hex(),
                }
            )
        )
        entries.append(AccountEntry(name=p.stem, path=p, address=key.address))
    node_list = [
        NodeEntry(
            name=f"node-{i}",
            role="validator",
            host="127.0.0.1",
            port=7000 + i,
            node_id="00" * 32,
            config=tmp_path / f"node-{i}.toml",
            log=tmp_path / "logs" / f"node-{i}.log",
        )
        for i in range(nodes)
    ]
    return ClusterDir(directory=tmp_path, chain_id=CHAIN, nodes=tuple(node_list), accounts=tuple(entries))


PIDS = {"node-0": 100, "node-1": 101, "node-2": 102}


async def run_fake(
    cluster: ClusterDir, opts: bench.BenchOptions, fake: FakeCluster
) -> tuple[bench.BenchResult, list[tuple[int, int]]]:
    ticks = iter(range(10**6))
    progress: list[tuple[int, int]] = []
    async with trio.open_nursery() as n:
        fake.nursery = n
        result = await bench.run_bench(
            cluster,
            opts,
            connect=fake.connect,
            make_order=stub_make_order,
            transfer_digest=stub_digest,
            cpu_reader=lambda pid: float(next(ticks)),
            pids={n.name: PIDS[n.name] for n in cluster.nodes},
            progress=lambda done, total: progress.append((done, total)),
        )
    return result, progress


async def test_bench_closed_loop_against_fake_nodes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cluster = make_cluster(tmp_path, accounts=3, nodes=2)
    fake = FakeCluster()
    result, progress = await run_fake(cluster, bench.BenchOptions(count=10, window=2), fake)
    assert (result.planned, result.settled, result.failures) == (10, 10, [])
    assert progress[-1] == (10, 10)
    assert fake.max_in_flight == 2  # the window held
    assert fake.connections == 4  # 2 per node, opened before the clock started
    # Round-robin over both nodes, and each account's seqs in order (the fake refuses anything else).
    assert {name for name, _ in fake.submitted} == {"127.0.0.1:7000", "127.0.0.1:7001"}
    assert result.roots_agree
    assert len(result.latencies_s) == 10 and all(0.003 <= x < 0.01 for x in result.latencies_s)
    assert result.duration_s > 0
    doc = bench.build_document(cluster, bench.BenchOptions(count=10, window=2), result, FAKE_COST, None)
    assert doc["settled"] == 10 and doc["roots_agree"] and doc["client_latency"]["count"] == 10
    assert "10/10 payments settled" in bench.render_document(doc, None)


async def test_bench_open_loop_rate(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    cluster = make_cluster(tmp_path, accounts=4, nodes=3)
    fake = FakeCluster()
    opts = bench.BenchOptions(count=12, rate=100.0)
    result, _ = await run_fake(cluster, opts, fake)
    assert result.settled == 12 and not result.failures
    # 12 payments at 100/s: the last is released at 110 ms and settles about 3 ms later.
    assert 0.110 <= result.duration_s < 0.125
    assert result.schedule_lag_s < 0.005


async def test_bench_records_refusals_and_stops_that_account(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cluster = make_cluster(tmp_path, accounts=2, nodes=2)
    fake = FakeCluster(refuse_seq=1)
    result, _ = await run_fake(cluster, bench.BenchOptions(count=6, window=8), fake)
    # Each account gets 3 payments; seq 1 is refused, so seq 2 is never sent.
    assert result.settled == 2
    assert len(result.failures) == 2 and all("refused" in f["error"] for f in result.failures)
    doc = bench.build_document(cluster, bench.BenchOptions(count=6), result, FAKE_COST, None)
    assert "2 payments failed" in bench.render_document(doc, None)


FAKE_COST = bench.CryptoCost(schnorr_verify=700e-6, ed25519_sign=20e-6, ed25519_verify=50e-6, runs=1)


def stub_make_shielded(key: SpendingKey, chain_id: bytes, amount: int, seq: int) -> ShieldedOrder:
    tx = ShieldedTransfer(
        chain_id=ChainId(chain_id),
        kind=SHIELD,
        inputs=(),
        outputs=(bytes(31) + b"\x01",),
        public_in=Amount(amount),
        public_out=Amount(0),
        account=Address(key.address),
        seq=Seq(seq),
        memos=(b"",),
    )
    return ShieldedOrder(tx=tx, proof=bytes(256), account_key=key.public, account_proof=bytes(96))


async def test_bench_shielded_against_fake_nodes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cluster = make_cluster(tmp_path, accounts=3, nodes=2)
    fake = FakeCluster()
    opts = bench.BenchOptions(count=7, window=4, shielded=True)
    async with trio.open_nursery() as n:
        fake.nursery = n
        result = await bench.run_bench(
            cluster,
            opts,
            connect=fake.connect,
            make_order=stub_make_order,
            transfer_digest=stub_digest,
            cpu_reader=lambda pid: 1.0,
            progress=lambda done, total: None,
            make_shielded=stub_make_shielded,
        )
    # Every order went as SubmitShielded, each account's seqs in order (the fake refuses anything else).
    assert (result.planned, result.settled, result.failures, fake.shielded) == (7, 7, [], 7)
    groth = bench.Groth16Cost(verify=30e-3, batch_per_proof=12e-3, batch=8, runs=10)
    cost = bench.CryptoCost(
        schnorr_verify=700e-6, ed25519_sign=20e-6, ed25519_verify=50e-6, runs=1, groth16=groth
    )
    assert bench.crypto_per_payment(cost, "full", 4, shielded=True) == pytest.approx(30.85e-3)
    doc = bench.build_document(cluster, opts, result, cost, None)
    assert doc["kind"] == "shielded" and doc["crypto"]["groth16_batch_per_proof_ms"] == 12.0
    text = bench.render_document(doc, None)
    assert "7/7 shielded payments (SHIELD orders) settled" in text
    assert "30.0 ms alone" in text and "12.0 ms per proof in a batch of 8" in text


def test_bench_shielded_needs_a_builder_and_a_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench_cli.add_bench_args(parser)
    assert bench_cli.cmd_bench(parser.parse_args(["--dir", "x", "--shielded"])) == 2
    assert "cluster.json" in capsys.readouterr().err
    assert parser.parse_args(["--dir", "x"]).count is None  # 1000, or 64 with --shielded


def test_bench_rejects_bad_args(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench_cli.add_bench_args(parser)
    assert bench_cli.cmd_bench(parser.parse_args(["--dir", "x", "--rate", "0"])) == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--dir", "x", "--rate", "5", "--window", "3"])


def test_bench_missing_cluster_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench_cli.add_bench_args(parser)
    assert bench_cli.cmd_bench(parser.parse_args(["--dir", str(tmp_path)])) == 2
    assert "cluster.json" in capsys.readouterr().err
