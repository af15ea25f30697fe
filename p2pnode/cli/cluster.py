"""``p2pnode net up`` / ``net down``: start and stop a local cluster (:class:`p2pnode.localnet.LocalNet`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import trio

from p2pnode.cli.testnet import add_spec_args, describe_nodes, spec_from_args, stderr_line
from p2pnode.errors import LocalError
from p2pnode.localnet import CLUSTER_FILE, PIDS_FILE, ClusterError, LocalNet, read_cluster, write_cluster


def add_up_args(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--validators", type=int, metavar="N", help="number of validators")
    which.add_argument(
        "--config", type=Path, metavar="FILE", help="cluster definition (configs/local-*.toml)"
    )
    add_spec_args(parser, validators=False)
    parser.add_argument("--dir", type=Path, required=True, metavar="DIR", help="cluster directory")
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds to wait for readiness (default 60)"
    )


def add_down_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, metavar="DIR", help="cluster directory")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds before SIGKILL (default 10)"
    )


def cmd_up(args: argparse.Namespace) -> int:
    """Create the cluster if the directory has none (else reuse it: flags that contradict its shape are
    refused), start every node and wait until all are ready; on failure stop what was started."""
    if not (args.dir / CLUSTER_FILE).is_file():
        from p2pnode.zk.paths import zk_paths_from_args

        spec = spec_from_args(args)
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
    net = LocalNet(cluster)
    alive = net.running()
    if alive:
        name, pid = next(iter(alive.items()))
        raise LocalError(f"{args.dir}: cluster already running ({name} pid {pid}); run `net down`")
    start = time.monotonic()
    try:
        net.start()

        async def ready() -> None:
            with trio.fail_after(args.timeout):
                await net.wait_ready()

        try:
            trio.run(ready)
        except trio.TooSlowError:
            raise net.failure(net.names, f"cluster not ready within {args.timeout:g}s") from None
    except BaseException:
        net.stop(grace=5.0)
        raise
    elapsed = time.monotonic() - start
    for line in describe_nodes(cluster, net.pids()):
        print(line)
    print(f"cluster ready in {elapsed:.1f}s")
    return 0


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


__all__ = ["ClusterError", "add_down_args", "add_up_args", "cmd_down", "cmd_up"]
