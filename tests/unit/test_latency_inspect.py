"""``p2pnode latency`` beyond the stage table: the critical path, ``--trace``, ``--run``/``--since``/
``--until``, ``--compare`` and the figure's tail groups, on the hand-built log set of test_latency.py."""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from p2pnode.cli import latency as latency_cli
from p2pnode.errors import LocalError
from p2pnode.tools import bench, latency_select
from p2pnode.tools.latency import analyze, collect
from p2pnode.tools.latency_compare import compare_text, load_report, overlaps
from p2pnode.tools.latency_plot import tail_groups
from p2pnode.tools.latency_report import SEGMENTS, Report
from p2pnode.tools.latency_trace import build_trace
from p2pnode.tools.stats import percentile_ci
from tests.unit.test_latency import BASE, TX_A, TX_B, TX_C, build_logs, ev


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    latency_cli.add_latency_args(parser)
    return parser.parse_args(argv)


def write_logs(tmp_path: Path, logs: dict[str, list[str]]) -> list[Path]:
    paths = []
    for name, lines in logs.items():
        p = tmp_path / Path(name).name
        p.write_text("\n".join(lines) + "\n")
        paths.append(p)
    return paths


# == critical path =========================================================================================
def test_critical_path_segments_add_up_to_the_last_node() -> None:
    r = analyze(build_logs())
    # A: deciding validator node-2 (its vote at 2.1 ms is the last one before the certificate at 3.0):
    # received 0.7, its verification call started at 1.9 - 0.8, verified 1.9, voted 2.1; node-3 applied
    # last, having received the certificate at 4.5 and applied it at 5.0.
    # B (submitted at 10 ms): node-2 again; node-3 received the certificate at 13.9, applied at 15.2.
    paths = sorted(r.paths)
    assert [tuple(round(x, 3) for x in p) for p in paths] == [
        (0.7, 0.4, 0.8, 0.2, 0.9, 1.5, 0.5),
        (0.8, 0.4, 0.8, 0.2, 0.8, 0.9, 1.3),
    ]
    assert [round(sum(p), 3) for p in paths] == [5.0, 5.2]  # = applied_last of each payment
    assert (r.segments["verify_queue"].count, r.segments["verify_queue"].p50) == (2, 0.4)
    assert r.segments["apply"].max == 1.3
    assert set(r.segments) == set(SEGMENTS)
    # C never got a certificate: no critical path for it.
    assert len(r.paths) == 2


def test_first_median_last_node_samples_per_stage() -> None:
    r = analyze(build_logs())
    # A's order reached nodes at 0.1, 0.5, 0.7, 0.9 ms; B's at 0.2, 0.6, 0.8, 1.0; C's at 0.3, 0.5, 0.9, 1.5.
    assert r.samples["received_first"] == (0.1, 0.2, 0.3)
    assert r.samples["received_median"] == (0.5, 0.5, 0.6)
    assert r.samples["received_last"] == (0.9, 1.0, 1.5)
    # C was verified at two nodes only: its median is the first of them.
    assert r.samples["verified_median"] == (1.0, 1.5, 1.6)


# == percentile intervals ==================================================================================
def test_percentile_ci_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    ci = percentile_ci(values)
    # p50 of 100: 50 -/+ 1.96 * 5 = 40.2 .. 59.8 -> ranks 41 and 61.
    assert ci["p50"] == [41.0, 61.0]
    # p90: 90 -/+ 1.96 * 3 = 84.1 .. 95.9 -> ranks 85 and 97.
    assert ci["p90"] == [85.0, 97.0]
    assert ci["p99"] == [98.0, 100.0]  # 99 - 1.96 * 0.995 = 97.05 -> rank 98
    assert percentile_ci([]) == {"p50": None, "p90": None, "p99": None}
    assert percentile_ci([3.0]) == {"p50": [3.0, 3.0], "p90": [3.0, 3.0], "p99": [3.0, 3.0]}


def test_report_json_round_trips_with_segments_and_intervals() -> None:
    r = analyze(build_logs())
    doc = r.to_json()
    assert doc["ci95"]["applied_last"]["p50"] == [5.0, 5.2]
    assert doc["segments"]["verify"]["p50"] == 0.8
    assert Report.from_json(json.loads(json.dumps(doc))) == r
    # Documents written before segments and intervals existed still load.
    old = {k: v for k, v in doc.items() if k not in ("segments", "ci95", "selection")}
    assert Report.from_json(old).segments == {}


# == traces ================================================================================================
def check_trace_structure(trace: dict[str, Any]) -> dict[str, Any]:
    """The structure test: well-formed events, flows bound to existing slices, ordered tracks."""
    events = trace["traceEvents"]
    json.loads(json.dumps(trace))  # plain JSON
    names: dict[int, str] = {}
    slices: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    flows: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for e in events:
        assert e["ph"] in ("M", "X", "s", "f"), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int) and isinstance(e["name"], str)
        if e["ph"] == "M":
            if e["name"] == "process_name":
                names[e["pid"]] = e["args"]["name"]
            continue
        assert isinstance(e["ts"], int | float) and e["ts"] >= 0
        if e["ph"] == "X":
            assert isinstance(e["dur"], int | float) and e["dur"] > 0
            assert isinstance(e["args"]["tx"], str)
            slices[(e["pid"], e["tid"])].append(e)
        else:
            assert e["ph"] not in flows[e["id"]], f"flow {e['id']} has two {e['ph']} events"
            flows[e["id"]][e["ph"]] = e
            if e["ph"] == "f":
                assert e["bp"] == "e"
    for pid, _ in slices:
        assert pid in names, f"pid {pid} has no process_name"
    # Timestamps ordered per track, and slices on one track never overlap (no misnesting).
    for track, xs in slices.items():
        assert [x["ts"] for x in xs] == sorted(x["ts"] for x in xs), track
        for a, b in zip(xs, xs[1:], strict=False):
            assert a["ts"] + a["dur"] <= b["ts"] + 1e-9, (track, a, b)

    def bound(e: dict[str, Any]) -> dict[str, Any]:
        hits = [x for x in slices[(e["pid"], e["tid"])] if x["ts"] <= e["ts"] <= x["ts"] + x["dur"]]
        assert hits, f"flow event not inside a slice: {e}"
        return hits[0]

    for fid, pair in flows.items():
        assert set(pair) == {"s", "f"}, f"flow {fid} is not a start and an end"
        src, dst = bound(pair["s"]), bound(pair["f"])
        assert src["args"]["tx"] == dst["args"]["tx"] == pair["s"]["args"]["tx"]
        assert pair["s"]["name"] == pair["f"]["name"]
    return {"names": names, "slices": slices, "flows": flows}


def test_trace_structure_on_the_known_logs() -> None:
    trace = build_trace(collect(build_logs()))
    got = check_trace_structure(trace)
    assert sorted(got["names"].values()) == [
        "node-0 (validator)",
        "node-1 (validator)",
        "node-2 (validator)",
        "node-3 (full)",
    ]
    kinds: dict[str, int] = defaultdict(int)
    for pair in got["flows"].values():
        kinds[pair["s"]["name"]] += 1
        assert pair["s"]["ts"] <= pair["f"]["ts"]  # one clock: causes precede effects
    # Orders: A and B to 3 nodes each; C only to node-3 (node-0 and node-1 logged nothing after its
    # order_received, so they have no slice of C to bind an arrow to). Votes: the one vote_received
    # line (node-0 -> node-1, A). Certificates: 3 receivers each of A and B.
    assert dict(kinds) == {"order": 7, "vote": 1, "certificate": 6}
    # Payment A at node-2: queued for its verifier 0.7 -> 1.1 ms, then the 0.8 ms verification call.
    by_tx = [
        (x["name"], x["ts"], x["dur"])
        for xs in got["slices"].values()
        for x in xs
        if x["args"]["tx"] == TX_A and x["pid"] == 3
    ]
    assert by_tx[:3] == [
        ("queued for verifier", 700.0, 400.0),
        ("verify proof", 1100.0, 800.0),
        ("lock + sign vote", 1900.0, 200.0),
    ]


def test_trace_structure_holds_with_a_skewed_clock() -> None:
    check_trace_structure(build_trace(collect(build_logs(shift_us={"node-3": -3000}))))


def test_concurrent_payments_get_separate_lanes() -> None:
    logs = build_logs()
    # A second payment D at node-0 overlapping A in time.
    tx_d = "dd" * 32
    logs["/logs/node-0.log"] += [
        ev("node-0", 50, "order_submitted", tx=tx_d, sender="04" * 20, seq=0, amount=1),
        ev("node-0", 60, "order_received", tx=tx_d, hops=0, peer="client"),
        ev("node-0", 900, "proof_verified", tx=tx_d, ok=True, duration_us=300, batch=2),
    ]
    got = check_trace_structure(build_trace(collect(logs)))
    lanes = {tid for (pid, tid) in got["slices"] if pid == 1}
    assert lanes == {1, 2}


def test_cli_writes_trace_and_html(tmp_path: Path) -> None:
    paths = write_logs(tmp_path, build_logs())
    out, html = tmp_path / "t.json", tmp_path / "t.html"
    args = parse_args([*map(str, paths), "--trace", str(out), "--trace-html", str(html)])
    assert latency_cli.cmd_latency(args) == 0
    check_trace_structure(json.loads(out.read_text()))
    page = html.read_text()
    assert page.startswith("<!doctype html>") and '"traceEvents"' in page and "</script>" in page


# == run selection =========================================================================================
def marker(node: str, us: int, run: str, phase: str) -> str:
    return ev(node, us, "run_marker", run=run, phase=phase, by="p2pnode bench")


def two_run_logs(end_first: bool = True) -> dict[str, list[str]]:
    logs = build_logs()
    for name in logs:
        node = Path(name).stem
        logs[name].append(marker(node, -5, "r1", "start"))
        if end_first:
            logs[name].append(marker(node, 16_000, "r1", "end"))
        logs[name].append(marker(node, 19_000, "r2", "start"))
        logs[name].append(marker(node, 30_000, "r2", "end"))
    return logs


def test_scan_finds_runs_and_submit_times() -> None:
    found = latency_select.scan(two_run_logs())
    assert [(w.run, w.start_ns - BASE, w.end_ns) for w in found.runs] == [
        ("r1", -5000, BASE + 16_000_000),
        ("r2", 19_000_000, BASE + 30_000_000),
    ]
    assert found.anchors[TX_B] == BASE + 10_000_000
    assert latency_select.select(found, *found.window("r1")) == {TX_A, TX_B}
    assert latency_select.select(found, *found.window("r2")) == {TX_C}
    with pytest.raises(LocalError, match="runs found: r1, r2"):
        found.window("r3")


def test_a_run_without_end_lasts_until_the_next_run() -> None:
    found = latency_select.scan(two_run_logs(end_first=False))
    lo, hi = found.window("r1")
    assert hi == BASE + 19_000_000 - 1
    assert latency_select.select(found, lo, hi) == {TX_A, TX_B}


def test_markers_are_not_nodes_or_payments() -> None:
    r = analyze(two_run_logs())
    assert r.nodes == analyze(build_logs()).nodes and r.payments == 3 and r.malformed == 0


def test_cli_run_picks_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_logs(tmp_path, two_run_logs())
    assert latency_cli.cmd_latency(parse_args([*map(str, paths), "--json"])) == 0
    everything = json.loads(capsys.readouterr().out)
    assert everything["payments"] == 3 and everything["selection"] is None
    assert any("2 bench runs (r1, r2)" in w for w in everything["warnings"])

    assert latency_cli.cmd_latency(parse_args([*map(str, paths), "--run", "r1", "--json"])) == 0
    one = json.loads(capsys.readouterr().out)
    assert (one["payments"], one["settled"]) == (2, 2)
    assert one["selection"].startswith("run r1, payments submitted from ")
    assert one["stages"]["applied_last"]["max"] == 5.2

    assert latency_cli.cmd_latency(parse_args([*map(str, paths), "--run", "r2"])) == 0
    assert "1 payments (0 applied on every node)" in capsys.readouterr().out

    assert latency_cli.cmd_latency(parse_args([*map(str, paths), "--run", "nope"])) == 2
    assert "no run 'nope' in these logs (runs found: r1, r2)" in capsys.readouterr().err


def test_cli_time_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_logs(tmp_path, build_logs())
    since = str(BASE + 5_000_000)
    until = str(BASE + 15_000_000)
    assert (
        latency_cli.cmd_latency(parse_args([*map(str, paths), "--since", since, "--until", until, "--json"]))
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["payments"] == 1 and doc["stages"]["applied_last"]["p50"] == 5.2  # B only
    assert latency_cli.cmd_latency(parse_args([*map(str, paths), "--since", "yesterday"])) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_parse_time() -> None:
    assert latency_select.parse_time("1700000000000000000") == 1_700_000_000_000_000_000
    assert latency_select.parse_time("2023-11-14T22:13:20") == 1_700_000_000_000_000_000
    assert latency_select.parse_time("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    assert latency_select.parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000_000_000


def test_bench_run_markers_select_its_payments(tmp_path: Path) -> None:
    logs = {n: tmp_path / f"{n}.log" for n in ("node-0", "node-1")}
    cluster = SimpleNamespace(
        nodes=[SimpleNamespace(name=n, node_id=f"{i}" * 64, log=p) for i, (n, p) in enumerate(logs.items())]
    )
    run_id = bench.new_run_id()
    assert len(run_id) == len("20261202T072000Z-3fa9c1") and run_id[8] == "T" and run_id[15:17] == "Z-"
    for p in logs.values():
        p.write_text(json.dumps({"ts_ns": 1, "level": "info", "event": "node_ready", "node": p.stem}) + "\n")
    bench.write_run_marker(cluster, run_id, "start")  # type: ignore[arg-type]
    bench.write_run_marker(cluster, run_id, "end")  # type: ignore[arg-type]
    lines = logs["node-1"].read_text().splitlines()
    assert len(lines) == 3
    m = json.loads(lines[1])
    assert (m["event"], m["run"], m["phase"], m["node"], m["node_id"]) == (
        "run_marker",
        run_id,
        "start",
        "node-1",
        "1" * 16,
    )
    found = latency_select.scan({str(p): p.read_text().splitlines() for p in logs.values()})
    assert [w.run for w in found.runs] == [run_id] and found.runs[0].end_ns is not None


# == comparison ============================================================================================
def test_overlaps() -> None:
    assert overlaps([1.0, 2.0], [2.0, 3.0]) is True
    assert overlaps([1.0, 2.0], [2.5, 3.0]) is False
    assert overlaps(None, [1.0, 2.0]) is None


def slower(logs: dict[str, list[str]], factor: int) -> dict[str, list[str]]:
    """The same payments with every delay after their submit time multiplied by ``factor``."""
    submit = {TX_A: 0, TX_B: 10_000_000, TX_C: 20_000_000}
    out = {}
    for name, lines in logs.items():
        new = []
        for line in lines:
            obj = json.loads(line)
            t0 = submit.get(obj.get("tx", ""))
            if t0 is not None:
                obj["ts_ns"] = BASE + t0 + (obj["ts_ns"] - BASE - t0) * factor
            new.append(json.dumps(obj))
        out[name] = new
    return out


def test_compare_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = analyze(build_logs()), analyze(slower(build_logs(), 2))
    (tmp_path / "a.json").write_text(json.dumps(a.to_json()))
    bench_doc = {"version": 2, "run_id": "run-b", "log_latency": b.to_json()}
    (tmp_path / "b.json").write_text(json.dumps(bench_doc))
    assert load_report(tmp_path / "b.json")[0] == "run-b (b.json)"
    args = parse_args(["--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert latency_cli.cmd_latency(args) == 0
    out = capsys.readouterr().out
    assert "A: a.json" in out and "B: run-b (b.json)" in out
    row = next(line for line in out.splitlines() if line.startswith("applied, last node"))
    # p50 5.0 -> 10.0: +5.000, +100%; with two samples each the intervals are [5.0, 5.2] and [10, 10.4].
    assert "5.000   10.000   +5.000  +100%" in row and "~" not in row
    assert "critical path segments" in out and "inside the runs' own spread" in out
    # A run against itself: every delta is inside the spread.
    same = compare_text("a", a, "a", a)
    m = re.search(r"\((\d+) of (\d+) deltas\)", same)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) > 20


def test_compare_old_documents_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = analyze(build_logs()).to_json()
    old = {k: v for k, v in doc.items() if k not in ("segments", "ci95", "selection")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "bad.json").write_text("[1]")
    (tmp_path / "nolog.json").write_text(json.dumps({"log_latency": None}))
    assert (
        latency_cli.cmd_latency(
            parse_args(["--compare", str(tmp_path / "old.json")] * 1 + [str(tmp_path / "old.json")])
        )
        == 0
    )
    assert "no spread marks" in capsys.readouterr().out
    for bad in ("bad.json", "nolog.json", "missing.json"):
        assert (
            latency_cli.cmd_latency(
                parse_args(["--compare", str(tmp_path / bad), str(tmp_path / "old.json")])
            )
            == 2
        )
        assert "p2pnode latency:" in capsys.readouterr().err
    assert latency_cli.cmd_latency(parse_args([])) == 2


# == the figure ============================================================================================
def test_tail_groups() -> None:
    paths = [tuple(float(i == 1) * k for i in range(len(SEGMENTS))) for k in range(1, 201)]
    groups = tail_groups(paths)
    assert [(label, n) for label, n, _ in groups] == [
        ("all payments", 200),
        ("typical (p40-p60)", 40),
        ("slowest 1 %", 2),
    ]
    assert groups[2][2][1] == pytest.approx(199.5)  # the two slowest: 199 and 200, all in one segment
    assert groups[1][2][1] == pytest.approx(100.5)  # ranks 81..120
    assert tail_groups([]) == []


def test_plot_of_the_known_logs(tmp_path: Path) -> None:
    from p2pnode.tools.latency_plot import write_plot

    out = tmp_path / "l.png"
    write_plot(analyze(two_run_logs()), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_marker_and_new_keys_are_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "logs.md").read_text(encoding="utf-8")
    row = re.search(r"^\| `run_marker` \|(.*)$", doc, re.M)
    assert row and all(f"`{f}`" in row.group(1) for f in ("run", "phase", "by"))
    for segment in SEGMENTS:
        assert f"| `{segment}` |" in doc and f'"{segment}"' in doc
    for flag in ("--run", "--since", "--until", "--compare", "--trace"):
        assert flag in doc
