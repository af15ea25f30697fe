"""Two bench runs on one real 4-validator cluster: ``latency --run`` picks each one from the shared logs,
``--compare`` reads their bench documents, and ``--trace`` of a run passes the trace structure test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2pnode.localnet import ClusterSpec
from tests.system.conftest import cli, running_net
from tests.unit.test_latency_inspect import check_trace_structure

pytestmark = pytest.mark.slow

COUNT = 120


def test_two_bench_runs_selected_compared_and_traced(tmp_path: Path) -> None:
    spec = ClusterSpec(validators=4, accounts=8, shielded=False)
    with running_net(tmp_path / "four", spec) as net:
        d = str(net.cluster.directory)
        docs = []
        for extra in (["--window", "16"], ["--rate", "100"]):
            out = cli("bench", "--dir", d, "--count", str(COUNT), *extra, "--json", timeout=180)
            docs.append(json.loads(out.stdout))
    a, b = docs
    assert a["run_id"] != b["run_id"] and a["settled"] == b["settled"] == COUNT
    logs = sorted(str(p) for p in (tmp_path / "four" / "logs").glob("*.log"))

    mixed = json.loads(cli("latency", *logs, "--json").stdout)
    assert mixed["payments"] == 2 * COUNT
    assert any("2 bench runs" in w for w in mixed["warnings"])

    for doc in docs:
        one = json.loads(cli("latency", *logs, "--run", doc["run_id"], "--json").stdout)
        assert (one["payments"], one["settled"]) == (COUNT, COUNT)
        assert one["selection"].startswith(f"run {doc['run_id']}, ")
        # The run's own report equals what the bench computed for its digests.
        assert one["stages"] == doc["log_latency"]["stages"]
        assert one["segments"]["verify"]["count"] == COUNT

    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    table = cli("latency", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")).stdout
    assert f"A: {a['run_id']} (a.json)" in table and "applied, last node" in table and "B - A" in table

    trace_path = tmp_path / "trace.json"
    cli("latency", *logs, "--run", a["run_id"], "--trace", str(trace_path))
    trace = json.loads(trace_path.read_text())
    got = check_trace_structure(trace)
    assert sorted(got["names"].values()) == [f"node-{i} (validator)" for i in range(4)]
    kinds = {pair["s"]["name"] for pair in got["flows"].values()}
    assert {"order", "vote"} <= kinds
    assert trace["otherData"]["payments"] == COUNT
