"""``p2pnode testnet``: write a local cluster directory (:mod:`p2pnode.localnet`) and print its nodes.

A cluster definition file (``configs/local-*.toml``, ``--config``) sets the cluster parameters and node
config defaults; command-line flags override the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pnode.errors import ConfigError
from p2pnode.localnet import DEFAULT_BALANCE, ClusterDir, ClusterSpec, write_cluster


def add_spec_args(parser: argparse.ArgumentParser, *, validators: bool = True) -> None:
    """The cluster parameters shared by ``testnet`` and ``net up`` (all default to "not given")."""
    if validators:
        parser.add_argument("--validators", type=int, metavar="N", help="number of validators")
    parser.add_argument("--full-nodes", type=int, metavar="M", help="number of full nodes (default 0)")
    parser.add_argument("--accounts", type=int, metavar="K", help="number of funded accounts (default 8)")
    parser.add_argument(
        "--balance", type=int, metavar="B", help=f"balance of every account (default {DEFAULT_BALANCE})"
    )
    parser.add_argument("--host", metavar="HOST", help="address every node listens on (default 127.0.0.1)")
    parser.add_argument(
        "--base-port", type=int, metavar="P", help="node i listens on P+i; 0 picks free ports (default 0)"
    )
    parser.add_argument("--chain-name", metavar="NAME", help="chain name (default local)")
    parser.add_argument(
        "--no-shielded",
        action="store_true",
        help="no shielded pool: the genesis carries no verifying key (needs no Node.js toolchain)",
    )
    from p2pnode.zk.paths import add_zk_path_args

    add_zk_path_args(parser)


def spec_from_args(args: argparse.Namespace) -> ClusterSpec:
    """The spec of ``--config`` (if given) with the flags on top; ``--validators`` or a definition
    file is required."""
    overrides: dict[str, Any] = {
        "validators": getattr(args, "validators", None),
        "full_nodes": args.full_nodes,
        "accounts": args.accounts,
        "balance": args.balance,
        "host": args.host,
        "base_port": args.base_port,
        "chain_name": args.chain_name,
        "shielded": False if getattr(args, "no_shielded", False) else None,
    }
    if args.config is not None:
        return ClusterSpec.from_file(args.config, **overrides)
    if overrides["validators"] is None:
        raise ConfigError(
            "validators: not given (use --validators N, or --config FILE with cluster.validators)"
        )
    spec = ClusterSpec().with_overrides(**overrides)
    spec.validate()
    return spec


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_testnet_args(parser: argparse.ArgumentParser) -> None:
    add_spec_args(parser)
    parser.add_argument("--config", type=Path, metavar="CLUSTER.toml", help="cluster definition file")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write")


def describe_nodes(cluster: ClusterDir, pids: Mapping[str, int] | None = None) -> list[str]:
    """One aligned line per node: name, role, address (and pid)."""
    width = max(len(n.name) for n in cluster.nodes)
    lines = []
    for n in cluster.nodes:
        line = f"{n.name.ljust(width)}  {n.role.ljust(9)}  {n.address.ljust(21)}  {n.node_id[:16]}"
        if pids is not None:
            line += f"  pid {pids[n.name]}" if n.name in pids else "  not running"
        lines.append(line)
    return lines


def cmd_testnet(args: argparse.Namespace) -> int:
    from p2pnode.zk.paths import zk_paths_from_args

    spec = spec_from_args(args)
    zk = zk_paths_from_args(args) if spec.shielded else None
    cluster = write_cluster(spec, args.out, zk=zk, log=stderr_line)
    print(
        f"testnet {cluster.chain_name} (chain id {cluster.chain_id.hex()[:16]}) in {args.out}: "
        f"{spec.validators} validators, {spec.full_nodes} full nodes, {spec.accounts} accounts"
    )
    for line in describe_nodes(cluster):
        print(line)
    return 0
