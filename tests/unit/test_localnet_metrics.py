"""``net up --metrics``: metrics ports in the node configs (kept across runs) and DIR/prometheus.yml."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from p2pnode.config import load_config
from p2pnode.errors import LocalError
from p2pnode.localnet import (
    PROMETHEUS_FILE,
    ClusterSpec,
    enable_metrics,
    free_ports,
    metrics_targets,
    read_cluster,
    write_cluster,
)
from p2pnode.localnet.metrics import render_prometheus_config


def _cluster(tmp_path: Path, validators: int = 3) -> Path:
    write_cluster(ClusterSpec(validators=validators, accounts=0, shielded=False), tmp_path / "c")
    return tmp_path / "c"


def test_every_node_gets_a_free_port_and_prometheus_yml_names_them_all(tmp_path: Path) -> None:
    d = _cluster(tmp_path)
    cluster = read_cluster(d)
    assert metrics_targets(cluster) == {}
    targets = enable_metrics(cluster)
    assert list(targets) == ["node-0", "node-1", "node-2"]
    assert len(set(targets.values())) == 3
    for entry in cluster.nodes:
        assert load_config(entry.config).metrics.listen == targets[entry.name]
    text = (d / PROMETHEUS_FILE).read_text()
    assert "scrape_interval: 1s" in text
    for name, addr in targets.items():
        assert f'- targets: ["{addr}"]' in text and f'node: "{name}"' in text
    assert text.count('role: "validator"') == 3
    if shutil.which("promtool"):
        check = ["promtool", "check", "config", str(d / PROMETHEUS_FILE)]
        subprocess.run(check, check=True, capture_output=True)
    # A second `net up --metrics` keeps the ports it gave (Prometheus' targets stay valid).
    assert enable_metrics(read_cluster(d)) == targets
    assert enable_metrics(read_cluster(d), base_port=40000) == targets


def test_a_base_port_gives_node_i_base_plus_i(tmp_path: Path) -> None:
    d = _cluster(tmp_path)
    base = free_ports("127.0.0.1", 1)[0]
    if base > 65000:
        base -= 1000
    try:
        targets = enable_metrics(read_cluster(d), base_port=base)
    except LocalError as exc:  # a neighbour of the free port was taken meanwhile
        pytest.skip(str(exc))
    assert targets == {f"node-{i}": f"127.0.0.1:{base + i}" for i in range(3)}


def test_a_taken_base_port_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    d = _cluster(tmp_path)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(LocalError, match=f"node-0: metrics port 127.0.0.1:{port} is not free"):
            enable_metrics(read_cluster(d), base_port=port)
    assert metrics_targets(read_cluster(d)) == {}
    assert not (d / PROMETHEUS_FILE).exists()


def test_nodes_without_metrics_are_left_out_of_the_scrape_config(tmp_path: Path) -> None:
    cluster = read_cluster(_cluster(tmp_path))
    text = render_prometheus_config(cluster, {"node-1": "127.0.0.1:9101"})
    assert text.count("- targets:") == 1 and '"127.0.0.1:9101"' in text
