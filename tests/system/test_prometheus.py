"""A real Prometheus scrapes a 4-validator cluster started with ``net up --metrics``.

The check: the median settlement latency that Prometheus computes from the nodes' histograms
(``histogram_quantile``) agrees with ``p2pnode latency``'s median over the same payments, read from
the logs, within one bucket width; and ``promtool check metrics`` passes on every node's output.

Needs Debian's ``prometheus`` package (``make prometheus``; .ci/run installs it); skipped, saying so,
where the binaries are missing. Every process started here is stopped in a ``finally``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from p2pnode.localnet import LocalNet, metrics_targets, read_cluster
from p2pnode.net.metrics import LATENCY_BUCKETS
from p2pnode.tools.stats import percentile
from tests.system.conftest import cli, cli_json, log_events, stop_any, wait_until

pytestmark = pytest.mark.slow

PAYMENTS = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - 127.0.0.1 only
        body: bytes = resp.read()
        return body


def _query(api: str, expr: str) -> list[dict[str, Any]]:
    doc = json.loads(_get(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def _scalar(api: str, expr: str) -> float | None:
    result = _query(api, expr)
    return float(result[0]["value"][1]) if result else None


@contextmanager
def _prometheus(config: Path, storage: Path) -> Iterator[str]:
    """Prometheus on a free port with its own storage; yields its base URL once it answers."""
    port = _free_port()
    log = (storage.parent / "prometheus.out").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited {proc.returncode}"
            try:
                return _get(f"{api}/-/ready", timeout=1).startswith(b"Prometheus")
            except OSError:
                return False

        wait_until("prometheus ready", ready, timeout=60)
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(storage, ignore_errors=True)


def _bucket_width(value_s: float) -> float:
    """Width of the settlement-histogram bucket holding ``value_s`` (seconds)."""
    lower = 0.0
    for upper in LATENCY_BUCKETS:
        if value_s <= upper:
            return upper - lower
        lower = upper
    return float("inf")


def _per_node_settlement_s(logs: list[Path]) -> list[float]:
    """What the settlement histogram observes, from the logs: at each node, its first sight of a payment
    (``order_submitted`` / ``order_received`` / ``certificate_received``) to ``certificate_applied``."""
    out = []
    for log in logs:
        first: dict[str, int] = {}
        for e in log_events(log, "order_submitted", "order_received", "certificate_received"):
            first.setdefault(e["tx"], e["ts_ns"])
        for e in log_events(log, "certificate_applied"):
            if e["tx"] in first:
                out.append((e["ts_ns"] - first[e["tx"]]) / 1e9)
    return out


def test_prometheus_quantile_agrees_with_latency_tool(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.skip("Debian's prometheus package is not installed (run `make prometheus`)")
    d = tmp_path / "cluster"
    try:
        out = cli("net", "up", "--validators", "4", "--accounts", "16", "--metrics", "--dir", str(d)).stdout
        assert "prometheus.yml" in out
        cluster = read_cluster(d)
        targets = metrics_targets(cluster)
        assert sorted(targets) == cluster.names
        config = d / "prometheus.yml"
        for addr in targets.values():
            assert f'"{addr}"' in config.read_text()
        subprocess.run(["promtool", "check", "config", str(config)], check=True, capture_output=True)

        with _prometheus(config, tmp_path / "prometheus-data") as api:

            def all_up() -> bool:
                doc = json.loads(_get(f"{api}/api/v1/targets"))
                active = doc["data"]["activeTargets"]
                return len(active) == 4 and all(t["health"] == "up" for t in active)

            wait_until("every node scraped", all_up, timeout=30)
            bench = cli_json("bench", "--dir", str(d), "--count", str(PAYMENTS), "--window", "2", "--json")
            assert bench["settled"] == PAYMENTS, bench

            # Every node's own count, then wait until Prometheus has scraped exactly that.
            def node_count() -> float:
                total = 0.0
                for addr in targets.values():
                    text = _get(f"http://{addr}/metrics").decode()
                    count = "p2pnode_settlement_seconds_count"
                    total += float(next(x for x in text.splitlines() if x.startswith(count)).split()[-1])
                return total

            wait_until("every node applied every payment", lambda: node_count() >= 4 * PAYMENTS, 30)
            expected = node_count()
            wait_until(
                "prometheus caught up",
                lambda: _scalar(api, "sum(p2pnode_settlement_seconds_count)") == expected,
                timeout=30,
            )
            q = "histogram_quantile(0.5, sum(p2pnode_settlement_seconds_bucket) by (le))"
            prom_median = _scalar(api, q)
            assert prom_median is not None

            for addr in targets.values():
                text = _get(f"http://{addr}/metrics")
                check = subprocess.run(
                    ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
                )
                assert check.returncode == 0, (addr, check.stdout, check.stderr)
                assert b"p2pnode_payment_stage_seconds_bucket" in text

        logs = sorted((d / "logs").glob("*.log"))
        report = cli_json("latency", *map(str, logs), "--json")
        assert report["settled"] >= PAYMENTS
        tool_median = report["stages"]["applied_median"]["p50"] / 1000
        width = _bucket_width(tool_median)
        per_node = _per_node_settlement_s(logs)
        log_median = percentile(sorted(per_node), 50)
        summary = (
            f"prometheus histogram_quantile(0.5) {prom_median * 1000:.3f} ms over {expected:g} samples; "
            f"p2pnode latency applied_median p50 {tool_median * 1000:.3f} ms "
            f"(bucket width there {width * 1000:.3f} ms); "
            f"the same per-node samples from the logs: median {log_median * 1000:.3f} ms of {len(per_node)}"
        )
        print(summary)
        assert len(per_node) == expected
        assert abs(prom_median - tool_median) <= width, summary
        assert abs(prom_median - log_median) <= _bucket_width(log_median), summary
    finally:
        stop_any(d)
        if (d / "cluster.json").is_file():
            assert not LocalNet.open(d).running()
