"""Metrics ports of a local cluster and the Prometheus scrape config for it (``net up --metrics``).

:func:`enable_metrics` gives every node of a cluster directory a ``[metrics] listen`` address (kept if
its config already has one, so the ports stay the same across ``net up`` runs) and writes
``DIR/prometheus.yml``: one scrape job naming every node, scraped every second, each target labelled
with the node's name and role. ``prometheus --config.file=DIR/prometheus.yml`` then scrapes the cluster.

Error handling: :class:`LocalError` if a chosen port is taken, or a base port leaves no room.
"""

from __future__ import annotations

import json
from pathlib import Path

from p2pnode.config import load_config, parse_hostport
from p2pnode.errors import LocalError
from p2pnode.localnet.directory import ClusterDir, free_ports
from p2pnode.localnet.processes import port_problem

PROMETHEUS_FILE = "prometheus.yml"
SCRAPE_INTERVAL = "1s"


def metrics_targets(cluster: ClusterDir) -> dict[str, str]:
    """``node name -> HOST:PORT`` of each node whose config has ``[metrics] listen`` set."""
    out = {}
    for entry in cluster.nodes:
        listen = load_config(entry.config).metrics.listen
        if listen:
            out[entry.name] = listen
    return out


def enable_metrics(cluster: ClusterDir, *, base_port: int | None = None) -> dict[str, str]:
    """Give every node a metrics address and write ``prometheus.yml``; returns ``name -> HOST:PORT``.

    Nodes that have one keep it. The others get ``base_port + i`` (node ``i`` of the cluster; each
    checked free now) or, without ``base_port``, ports that were free a moment ago. The node configs
    get a ``[metrics]`` section appended; nothing else in them changes."""
    have = metrics_targets(cluster)
    missing = [(i, e) for i, e in enumerate(cluster.nodes) if e.name not in have]
    if missing:
        host = missing[0][1].host
        if base_port:
            if not 1 <= base_port <= 65535 - len(cluster.nodes):
                raise LocalError(f"--metrics: base port {base_port} leaves no room for {len(cluster.nodes)}")
            ports = [base_port + i for i, _ in missing]

            for (_, entry), port in zip(missing, ports, strict=True):
                problem = port_problem(entry.host, port)
                if problem is not None:
                    raise LocalError(
                        f"{entry.name}: metrics port {entry.host}:{port} is not free: {problem}; "
                        "choose another base port"
                    )
        else:
            ports = free_ports(host, len(missing))
        for (_, entry), port in zip(missing, ports, strict=True):
            text = entry.config.read_text(encoding="utf-8")
            if not text.endswith("\n"):
                text += "\n"
            text += f'\n[metrics]\nlisten = "{entry.host}:{port}"\n'
            entry.config.write_text(text, encoding="utf-8")
            have[entry.name] = f"{entry.host}:{port}"
    write_prometheus_config(cluster, have)
    return {e.name: have[e.name] for e in cluster.nodes if e.name in have}


def render_prometheus_config(cluster: ClusterDir, targets: dict[str, str]) -> str:
    """A Prometheus scrape config (YAML; JSON strings are valid YAML scalars) for these targets."""
    lines = [
        "# Scrape config for the cluster in this directory, written by `p2pnode net up --metrics`.",
        "#   prometheus --config.file=prometheus.yml --storage.tsdb.path=prometheus-data",
        "# Every metric: docs/metrics.md.",
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL}",
        f"  evaluation_interval: {SCRAPE_INTERVAL}",
        "scrape_configs:",
        "  - job_name: p2pnode",
        f"    scrape_interval: {SCRAPE_INTERVAL}",
        "    metrics_path: /metrics",
        "    static_configs:",
    ]
    for entry in cluster.nodes:
        addr = targets.get(entry.name)
        if addr is None:
            continue
        parse_hostport(addr, key=f"{entry.name} metrics.listen")
        lines += [
            f"      - targets: [{json.dumps(addr)}]",
            f"        labels: {{node: {json.dumps(entry.name)}, role: {json.dumps(entry.role)}, "
            f"chain: {json.dumps(cluster.chain_name or cluster.chain_id.hex()[:16])}}}",
        ]
    return "\n".join(lines) + "\n"


def write_prometheus_config(cluster: ClusterDir, targets: dict[str, str]) -> Path:
    path = Path(cluster.directory) / PROMETHEUS_FILE
    path.write_text(render_prometheus_config(cluster, targets), encoding="utf-8")
    return path


__all__ = [
    "PROMETHEUS_FILE",
    "SCRAPE_INTERVAL",
    "enable_metrics",
    "metrics_targets",
    "render_prometheus_config",
    "write_prometheus_config",
]
