"""``p2pnode net up`` / ``net down`` / ``net status``: start, stop and inspect a local cluster
(:class:`p2pnode.localnet.LocalNet`). Printing only: the work is done by :mod:`p2pnode.localnet`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import trio

from p2pnode.cli.testnet import add_spec_args, describe_nodes, spec_from_args, stderr_line
from p2pnode.errors import LocalError
from p2pnode.localnet import (
    CLUSTER_FILE,
    PIDS_FILE,
    PROMETHEUS_FILE,
    ClusterDir,
    ClusterError,
    ClusterStatus,
    LocalNet,
    cluster_status,
    enable_metrics,
    read_cluster,
    ready_timeout_s,
    write_cluster,
)

# Clusters of more nodes than this print progress lines on stderr while they come up.
PROGRESS_NODES = 8
PROGRESS_EVERY_S = 5.0


def add_up_args(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--validators", type=int, metavar="N", help="number of validators")
    which.add_argument(
        "--config", type=Path, metavar="FILE", help="cluster definition (configs/local-*.toml)"
    )
    add_spec_args(parser, validators=False)
    parser.add_argument(
        "--network",
        type=Path,
        metavar="PROFILE",
        help="network profile (configs/network/*.toml) every link crosses: nodes are placed on its "
        "regions (docs/network.md); overrides the definition file's [network] table",
    )
    parser.add_argument("--dir", type=Path, required=True, metavar="DIR", help="cluster directory")
    parser.add_argument(
        "--metrics",
        type=int,
        nargs="?",
        const=0,
        metavar="BASE_PORT",
        help="serve Prometheus metrics: node i on BASE_PORT+i (default: free ports; kept across runs), "
        "and write DIR/prometheus.yml (docs/metrics.md)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds to wait until every node is ready (default: 20 + 5 per node per CPU core, at least 60)",
    )
    parser.add_argument(
        "--wave",
        type=int,
        metavar="K",
        help="start K nodes at a time, each wave once the last one answers (default: 4 per CPU core, "
        "at least 8)",
    )


def add_status_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, metavar="DIR", help="cluster directory")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds each node may take to answer (default 5)",
    )


def add_down_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, metavar="DIR", help="cluster directory")
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds from SIGTERM to SIGKILL (default: 10 + 1 per node per CPU core)",
    )


def cmd_up(args: argparse.Namespace) -> int:
    """Create the cluster if the directory has none (else reuse it: flags that contradict its shape are
    refused), start every node and wait until all are ready; on failure stop what was started."""
    if not (args.dir / CLUSTER_FILE).is_file():
        from p2pnode.zk.paths import zk_paths_from_args

        spec = spec_from_args(args).with_overrides(network=args.network)
        spec.validate()
        zk = zk_paths_from_args(args) if spec.shielded else None
        cluster = write_cluster(spec, args.dir, zk=zk, log=stderr_line)
    else:
        cluster = read_cluster(args.dir)
        have_v = cluster.validators
        have_f = len(cluster.nodes) - have_v
        if (args.validators is not None and args.validators != have_v) or (
            args.full_nodes is not None and args.full_nodes != have_f
        ):
            raise LocalError(
                f"{args.dir}: already holds a cluster of {have_v} validators and {have_f} full "
                "nodes; remove the directory or choose another"
            )
        _check_same_network(cluster, args.network)
    targets = enable_metrics(cluster, base_port=args.metrics or None) if args.metrics is not None else {}
    net = LocalNet(cluster)
    alive = net.running()
    if alive:
        name, pid = next(iter(alive.items()))
        raise LocalError(f"{args.dir}: cluster already running ({name} pid {pid}); run `net down`")
    if args.wave is not None and args.wave < 1:
        raise LocalError(f"--wave: {args.wave} is not a positive number of nodes")
    timeout = args.timeout if args.timeout is not None else ready_timeout_s(len(cluster.nodes))
    start = time.monotonic()
    progress = _ProgressLines(start) if len(cluster.nodes) > PROGRESS_NODES else None
    try:

        async def up() -> None:
            with trio.fail_after(timeout):
                await net.start_in_waves(wave=args.wave, progress=progress)
                await net.wait_ready(progress=progress)

        try:
            trio.run(up)
        except trio.TooSlowError:
            raise net.failure(_not_ready(net), f"cluster not ready within {timeout:g}s") from None
    except BaseException:
        net.stop()
        raise
    elapsed = time.monotonic() - start
    for line in describe_nodes(cluster, net.pids()):
        print(line)
    if targets:
        print(f"metrics: {', '.join(f'{n} http://{a}/metrics' for n, a in targets.items())}")
        print(f"prometheus: prometheus --config.file={args.dir / PROMETHEUS_FILE}")
    if cluster.network is not None:
        print(describe_network(cluster))
    print(f"cluster ready in {elapsed:.1f}s")
    return 0


def _check_same_network(cluster: ClusterDir, profile: Path | None) -> None:
    """``--network`` on an existing cluster must name the profile it was written with."""
    if profile is None:
        return
    have = cluster.network
    if have is None or (cluster.directory / str(have["file"])).read_bytes() != _read(profile):
        raise LocalError(
            f"{cluster.directory}: already holds a cluster written "
            + (f"with network {have['name']!r}" if have else "without a network profile")
            + f"; --network {profile} applies when a cluster is created (remove the directory)"
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LocalError(f"--network: cannot read {path}: {exc.strerror or exc}") from None


def describe_network(cluster: ClusterDir) -> str:
    """One line: the profile, its median round trip, and each node's region."""
    net = cluster.network or {}
    placed = ", ".join(f"{n.name} {n.region}" for n in cluster.nodes)
    return f"network {net.get('name', '?')} (median RTT {net.get('median_rtt_ms', '?')} ms): {placed}"


class _ProgressLines:
    """Progress of a big cluster on stderr: one line when a phase ends, and at most one every
    ``PROGRESS_EVERY_S`` seconds in between."""

    def __init__(self, start: float) -> None:
        self._start = start
        self._last = start
        self._done: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        before = self._done.get(phase)
        self._done[phase] = done
        finished = done == total and before != total
        if finished or (done != before and now - self._last >= PROGRESS_EVERY_S):
            self._last = now
            counts = ", ".join(f"{name} {n}/{total}" for name, n in self._done.items())
            stderr_line(f"net up: {counts} ({now - self._start:.0f}s)")


def _not_ready(net: LocalNet) -> list[str]:
    """The nodes to show log tails of when the cluster is not ready in time: those not answering or
    short of peers (the first few), else every node."""

    try:
        status = trio.run(lambda: cluster_status(net, probe_s=2.0))
    except (OSError, LocalError):
        return net.names
    lagging = [n.name for n in status.nodes if not n.ready]
    return lagging or net.names


def cmd_down(args: argparse.Namespace) -> int:
    if not (args.dir / PIDS_FILE).exists():
        print(f"no running cluster in {args.dir}")
        return 0
    for stopped in LocalNet.open(args.dir).stop(grace=args.timeout):
        if stopped.outcome == "not running":
            print(f"{stopped.name} (pid {stopped.pid}) was not running")
        else:
            print(f"{stopped.outcome} {stopped.name} (pid {stopped.pid})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Every node's process, memory, peers, applied count and root; exit status 0 when every node runs,
    answers and reports the same root, 1 otherwise."""
    net = LocalNet.open(args.dir)
    status = trio.run(lambda: cluster_status(net, probe_s=args.timeout))
    if args.json:
        print(json.dumps(status.to_json(), indent=2, sort_keys=True))
    else:
        for line in render_status(status):
            print(line)
    return 0 if status.healthy else 1


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def render_status(status: ClusterStatus) -> list[str]:
    width = max([4, *(len(n.name) for n in status.nodes)])
    rwidth = max([len(n.region) for n in status.nodes] or [0])

    def region(name: str) -> str:
        return f"  {name.ljust(max(rwidth, 6))}" if rwidth else ""

    lines = [
        f"{'node'.ljust(width)}  {'role':<9}{region('region')}  {'pid':>7}  {'rss MiB':>8}  {'tree MiB':>8}  "
        f"{'peers':>5}  {'applied':>7}  root"
    ]
    for n in status.nodes:
        pid = str(n.pid) if n.pid is not None else "-"
        peers = str(n.peer_count) if n.peer_count is not None else "-"
        applied = str(n.applied) if n.applied is not None else "-"
        root = n.root[:16] if n.root else (n.error or "not running")
        lines.append(
            f"{n.name.ljust(width)}  {n.role:<9}{region(n.region)}  {pid:>7}  {_mib(n.rss):>8}  "
            f"{_mib(n.tree_rss):>8}  "
            f"{peers:>5}  {applied:>7}  {root}"
        )
    m = status.memory
    lines.append(
        f"{status.running}/{len(status.nodes)} running, {status.answering} answering; "
        f"rss per node median {_mib(m.median_rss)} MiB, max {_mib(m.max_rss)} MiB, "
        f"total {_mib(m.total_rss)} MiB; with workers median {_mib(m.median_tree_rss)} MiB, "
        f"max {_mib(m.max_tree_rss)} MiB, total {_mib(m.total_tree_rss)} MiB"
    )
    if status.network is not None:
        net = status.network
        lines.append(f"network {net.get('name', '?')}: median round trip {net.get('median_rtt_ms', '?')} ms")
    if status.roots_agree:
        lines.append(f"state roots agree on every node: {status.roots[0]}")
    else:
        lines.append(f"STATE ROOTS DIFFER or a node did not answer: {len(status.roots)} distinct roots")
    return lines


__all__ = [
    "ClusterError",
    "add_down_args",
    "add_status_args",
    "add_up_args",
    "cmd_down",
    "cmd_status",
    "cmd_up",
    "render_status",
]
