"""``p2pnode testnet``: keys, genesis and one config per node for a local cluster.

Layout written under the output directory (every path inside a node config is relative to it)::

    genesis.toml              validators (node ids) and funded accounts; its hash is the chain id
    keys/node-<i>.key         hex of the node's 32-byte Ed25519 seed, one line, mode 0600
    accounts/account-<i>.json {"address", "spending_key", "public"} (hex), mode 0600
    node-<i>.toml             nodes 0..N-1 are validators, N..N+M-1 full nodes
    cluster.json              names, roles, addresses and node ids: what ``net up`` and tests read

Bootstrap: node 0 knows node 1, every other node knows node 0; peer exchange finds the rest. A cluster
definition file (``configs/local-*.toml``) sets the ``[cluster]`` parameters and may carry
``[defaults.<section>]`` tables that are copied into every node config; command-line flags override
the file. Everything written is loaded back with the node's own loaders before the command returns.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pnode.config import NodeConfig, config_from_dict, load_config, read_toml
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.errors import ConfigError, LocalError
from p2pnode.genesis import chain_id_of, load_genesis, render_genesis
from p2pnode.wire.types import U64_MAX

if TYPE_CHECKING:
    from p2pnode.zk.paths import ZkPaths

DEFAULT_BALANCE = 1_000_000_000
# A certificate carries at most 256 signatures (wire limit), so a quorum must fit in 256.
MAX_VALIDATORS = 256
MAX_FULL_NODES = 1024
# Hosts travel in Peers messages, which bound them to 64 characters.
MAX_HOST_LEN = 64

CLUSTER_FILE = "cluster.json"
GENESIS_FILE = "genesis.toml"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """Parameters of a generated cluster. ``base_port`` 0 picks free ports; ``chain_name`` "" names it
    after the validator count."""

    validators: int
    full_nodes: int = 0
    accounts: int = 8
    balance: int = DEFAULT_BALANCE
    host: str = "127.0.0.1"
    base_port: int = 0
    chain_name: str = ""
    shielded: bool = True  # carry the shielded pool's verifying key in the genesis

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first parameter out of range."""
        if not 1 <= self.validators <= MAX_VALIDATORS:
            raise ConfigError(f"validators: {self.validators} is outside [1, {MAX_VALIDATORS}]")
        if not 0 <= self.full_nodes <= MAX_FULL_NODES:
            raise ConfigError(f"full_nodes: {self.full_nodes} is outside [0, {MAX_FULL_NODES}]")
        if self.accounts < 0:
            raise ConfigError(f"accounts: {self.accounts} is negative")
        if not 0 <= self.balance <= U64_MAX:
            raise ConfigError("balance: expected an unsigned 64-bit integer")
        if self.accounts * self.balance > U64_MAX:
            raise ConfigError("accounts * balance: total supply exceeds 2^64-1")
        if not self.host or len(self.host) > MAX_HOST_LEN or any(c in self.host for c in ' :"\\'):
            raise ConfigError(f"host: {self.host!r} is not a usable host name or IPv4 address")
        n = self.validators + self.full_nodes
        if self.base_port != 0 and not 1 <= self.base_port <= 65536 - n:
            raise ConfigError(f"base_port: {self.base_port} leaves no room for {n} ports below 65536")
        if len(self.chain_name) > 64 or any(ord(c) < 32 for c in self.chain_name):
            raise ConfigError("chain_name: expected at most 64 printable characters")

    @property
    def nodes(self) -> int:
        return self.validators + self.full_nodes


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEntry:
    """One node of a generated cluster, as recorded in ``cluster.json``."""

    name: str
    role: str  # "validator" | "full"
    host: str
    port: int
    config: str  # relative to the cluster directory
    node_id: str  # hex

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Testnet:
    """What ``cluster.json`` records, with ``directory`` added."""

    directory: Path
    chain_name: str
    chain_id: str  # hex
    nodes: tuple[NodeEntry, ...]
    accounts: tuple[str, ...]  # relative to the directory

    def node(self, name: str) -> NodeEntry:
        for entry in self.nodes:
            if entry.name == name:
                return entry
        raise LocalError(f"{self.directory}: no node named {name!r} (have {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def config_path(self, name: str) -> Path:
        return self.directory / self.node(name).config

    def account_paths(self) -> list[Path]:
        return [self.directory / a for a in self.accounts]

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_name": self.chain_name,
            "chain_id": self.chain_id,
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "host": n.host,
                    "port": n.port,
                    "config": n.config,
                    "node_id": n.node_id,
                }
                for n in self.nodes
            ],
            "accounts": list(self.accounts),
        }


def read_testnet(directory: Path) -> Testnet:
    """Read ``DIR/cluster.json``. Raises :class:`LocalError` if it is missing or malformed."""
    path = Path(directory) / CLUSTER_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        nodes = tuple(
            NodeEntry(
                name=str(n["name"]),
                role=str(n["role"]),
                host=str(n["host"]),
                port=int(n["port"]),
                config=str(n["config"]),
                node_id=str(n["node_id"]),
            )
            for n in doc["nodes"]
        )
        return Testnet(
            directory=Path(directory),
            chain_name=str(doc["chain_name"]),
            chain_id=str(doc["chain_id"]),
            nodes=nodes,
            accounts=tuple(str(a) for a in doc["accounts"]),
        )
    except FileNotFoundError:
        raise LocalError(f"{path}: no such file (create the cluster with `p2pnode testnet`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LocalError(f"{path}: malformed cluster file: {exc}") from None


# -- cluster definition files ------------------------------------------------------------------------
_SPEC_TYPES: dict[str, type] = {
    f.name: (str if f.name in ("host", "chain_name") else bool if f.name == "shielded" else int)
    for f in fields(ClusterSpec)
}
# Sections of a node config that a cluster may set for every node. [node] is per node by nature.
_DEFAULTABLE = tuple(f.name for f in fields(NodeConfig) if f.name not in ("node", "source"))


def load_cluster_definition(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a cluster definition: (``[cluster]`` parameters, ``[defaults.<section>]`` tables).

    Error handling: :class:`ConfigError` naming the file and the key for an unknown section or key, a
    value of the wrong type, or a default that is not a valid node config value.
    """
    path = Path(path)
    doc = read_toml(path)
    for key in doc:
        if key not in ("cluster", "defaults"):
            raise ConfigError(f"{path}: unknown section [{key}] (expected [cluster] and [defaults.*])")
    cluster = doc.get("cluster", {})
    if not isinstance(cluster, dict):
        raise ConfigError(f"{path}: [cluster]: expected a table")
    params: dict[str, Any] = {}
    for key, value in cluster.items():
        want = _SPEC_TYPES.get(key)
        if want is None:
            raise ConfigError(f"{path}: unknown key cluster.{key}")
        if want is int and (type(value) is not int):
            raise ConfigError(f"{path}: cluster.{key}: expected an integer, got {value!r}")
        if want is bool and not isinstance(value, bool):
            raise ConfigError(f"{path}: cluster.{key}: expected true or false, got {value!r}")
        if want is str and not isinstance(value, str):
            raise ConfigError(f"{path}: cluster.{key}: expected a string, got {value!r}")
        params[key] = value
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults]: expected tables [defaults.<section>]")
    try:
        check_defaults(defaults)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return params, defaults


def check_defaults(defaults: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless ``defaults`` is valid as the common part of a node config."""
    for section, table in defaults.items():
        if section == "node":
            raise ConfigError("defaults.node: the [node] section is written per node and cannot be defaulted")
        if section not in _DEFAULTABLE:
            raise ConfigError(f"unknown section [defaults.{section}] (one of {', '.join(_DEFAULTABLE)})")
        if not isinstance(table, dict):
            raise ConfigError(f"defaults.{section}: expected a table")
        if section == "log" and "file" in table:
            raise ConfigError("defaults.log.file: every node logs to its own file; it cannot be shared")
    probe = {"node": {"key_file": "k", "genesis": "g", "data_dir": "d"}, **defaults}
    try:
        config_from_dict(probe, Path("."))
    except ConfigError as exc:
        raise ConfigError(f"defaults: {exc}") from None


def resolve_spec(
    definition: Path | None = None, **overrides: Any
) -> tuple[ClusterSpec, dict[str, dict[str, Any]]]:
    """Merge a definition file (if any) with ``overrides`` (``None`` values are ignored) and validate."""
    params: dict[str, Any] = {}
    defaults: dict[str, dict[str, Any]] = {}
    if definition is not None:
        params, defaults = load_cluster_definition(definition)
    for key, value in overrides.items():
        if key not in _SPEC_TYPES:
            raise TypeError(f"unknown cluster parameter {key}")
        if value is not None:
            params[key] = value
    if "validators" not in params:
        raise ConfigError(
            "validators: not given (use --validators N, or --config FILE with cluster.validators)"
        )
    spec = ClusterSpec(**params)
    spec.validate()
    return spec, defaults


# -- writing -------------------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes (\" \\ \n \uXXXX) are valid TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to TOML")


def render_node_config(sections: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """TOML text of a node config (sections in :class:`NodeConfig` order)."""
    order = [f.name for f in fields(NodeConfig) if f.name != "source"]
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name in sorted(sections, key=lambda s: order.index(s) if s in order else len(order)):
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(val)}" for key, val in sections[name].items()]
    return "\n".join(lines) + "\n"


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case the file already existed with wider permissions
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports that were free on ``host`` a moment ago (all held open while picking)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            try:
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind((host, 0))
            except OSError as exc:
                raise LocalError(f"host: cannot bind a port on {host!r}: {exc.strerror or exc}") from None
            ports.append(sock.getsockname()[1])
        return ports


def write_testnet(
    out: Path,
    spec: ClusterSpec,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    zk: ZkPaths | None = None,
) -> Testnet:
    """Generate keys, genesis and node configs for ``spec`` under ``out`` and check they load.
    ``zk`` locates the circuit keys of a shielded pool (default :func:`p2pnode.zk.paths.find_zk_paths`).

    Error handling: :class:`LocalError` if ``out`` already holds a testnet (keys are never overwritten);
    :class:`ConfigError` for a bad spec or defaults. Files written before an error stay behind.
    """
    spec.validate()
    defaults = dict(defaults or {})
    check_defaults(defaults)
    out = Path(out)
    for existing in (CLUSTER_FILE, GENESIS_FILE, "keys", "accounts"):
        if (out / existing).exists():
            raise LocalError(
                f"{out}: already holds a testnet ({existing}); remove it or use another directory"
            )
    if out.exists() and not out.is_dir():
        raise LocalError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / "keys").mkdir(mode=0o700)  # secrets: readable by the owner only
    (out / "accounts").mkdir(mode=0o700)
    (out / "logs").mkdir(exist_ok=True)
    (out / "data").mkdir(exist_ok=True)

    n = spec.nodes
    ports = free_ports(spec.host, n) if spec.base_port == 0 else [spec.base_port + i for i in range(n)]
    chain_name = spec.chain_name or f"local-{spec.validators}"

    keys = [NodeKey.generate() for _ in range(n)]
    for i, key in enumerate(keys):
        _write_secret(out / "keys" / f"node-{i}.key", key.seed.hex() + "\n")

    account_files: list[str] = []
    funded: list[tuple[bytes, int]] = []
    for i in range(spec.accounts):
        sk = SpendingKey.generate()
        address = address_of(sk.public)
        rel = f"accounts/account-{i}.json"
        doc = {"address": address.hex(), "spending_key": sk.to_bytes().hex(), "public": sk.public.hex()}
        _write_secret(out / rel, json.dumps(doc, indent=2) + "\n")
        account_files.append(rel)
        funded.append((address, spec.balance))

    vk: str | None = None
    if spec.shielded:
        from p2pnode.zk.setup import ensure_circuit_keys

        zk_dir = ensure_circuit_keys(zk, log=lambda line: print(line, file=sys.stderr, flush=True))
        vk = (zk_dir / "verification_key.json").read_text(encoding="utf-8")
    genesis_text = render_genesis(
        chain_name, [(f"node-{i}", keys[i].public) for i in range(spec.validators)], funded, shielded_vk=vk
    )
    (out / GENESIS_FILE).write_text(genesis_text, encoding="utf-8")
    chain_id = chain_id_of(genesis_text.encode("utf-8"))

    nodes: list[NodeEntry] = []
    for i in range(n):
        name = f"node-{i}"
        role = "validator" if i < spec.validators else "full"
        boot_index = 1 if i == 0 else 0
        bootstrap = [f"{spec.host}:{ports[boot_index]}"] if boot_index < n else []
        sections: dict[str, dict[str, Any]] = {
            "node": {
                "name": name,
                "key_file": f"keys/{name}.key",
                "genesis": GENESIS_FILE,
                "data_dir": f"data/{name}",
                "listen": f"{spec.host}:{ports[i]}",
                "bootstrap": bootstrap,
            },
            "log": {"file": f"logs/{name}.log", "format": "json"},
        }
        for section, table in defaults.items():
            sections.setdefault(section, {}).update(table)
        header = f"{name} ({role}) of chain {chain_name!r}, written by `p2pnode testnet`.\n"
        header += "Paths are relative to this file's directory. Every key: configs/defaults.toml."
        (out / f"{name}.toml").write_text(render_node_config(sections, header), encoding="utf-8")
        nodes.append(
            NodeEntry(
                name=name,
                role=role,
                host=spec.host,
                port=ports[i],
                config=f"{name}.toml",
                node_id=keys[i].public.hex(),
            )
        )

    testnet = Testnet(
        directory=out,
        chain_name=chain_name,
        chain_id=chain_id.hex(),
        nodes=tuple(nodes),
        accounts=tuple(account_files),
    )
    (out / CLUSTER_FILE).write_text(json.dumps(testnet.to_json(), indent=2) + "\n", encoding="utf-8")
    check_testnet(testnet)
    return testnet


def check_testnet(testnet: Testnet) -> None:
    """Load everything back with the node's loaders; :class:`LocalError` on any disagreement."""
    genesis = load_genesis(testnet.directory / GENESIS_FILE)
    if genesis.chain_id.hex() != testnet.chain_id:
        raise LocalError(f"{testnet.directory}: genesis chain id does not match {CLUSTER_FILE}")
    committee = {v.node_id.hex() for v in genesis.validators}
    for entry in testnet.nodes:
        cfg = load_config(testnet.directory / entry.config)
        seed = bytes.fromhex(cfg.node.key_file.read_text(encoding="ascii").strip())
        if NodeKey.from_seed(seed).public.hex() != entry.node_id:
            raise LocalError(f"{cfg.node.key_file}: key does not match node id of {entry.name}")
        if (entry.node_id in committee) != (entry.role == "validator"):
            raise LocalError(f"{entry.name}: role {entry.role} disagrees with the genesis committee")
        if cfg.node.listen != entry.address:
            raise LocalError(f"{entry.name}: listen {cfg.node.listen} disagrees with {CLUSTER_FILE}")


# -- command -------------------------------------------------------------------------------------------
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
    parser.add_argument("--chain-name", metavar="NAME", help="chain name (default local-<validators>)")
    parser.add_argument(
        "--no-shielded",
        action="store_true",
        help="no shielded pool: the genesis carries no verifying key (needs no Node.js toolchain)",
    )
    from p2pnode.zk.paths import add_zk_path_args

    add_zk_path_args(parser)


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "validators": getattr(args, "validators", None),
        "full_nodes": args.full_nodes,
        "accounts": args.accounts,
        "balance": args.balance,
        "host": args.host,
        "base_port": args.base_port,
        "chain_name": args.chain_name,
        "shielded": False if getattr(args, "no_shielded", False) else None,
    }


def add_testnet_args(parser: argparse.ArgumentParser) -> None:
    add_spec_args(parser)
    parser.add_argument("--config", type=Path, metavar="CLUSTER.toml", help="cluster definition file")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write")


def describe_nodes(testnet: Testnet, pids: Mapping[str, int] | None = None) -> list[str]:
    """One aligned line per node: name, role, address (and pid)."""
    width = max(len(n.name) for n in testnet.nodes)
    lines = []
    for n in testnet.nodes:
        line = f"{n.name.ljust(width)}  {n.role.ljust(9)}  {n.address.ljust(21)}  {n.node_id[:16]}"
        if pids is not None:
            line += f"  pid {pids[n.name]}" if n.name in pids else "  not running"
        lines.append(line)
    return lines


def cmd_testnet(args: argparse.Namespace) -> int:
    from p2pnode.zk.paths import zk_paths_from_args

    spec, defaults = resolve_spec(args.config, **spec_overrides(args))
    testnet = write_testnet(args.out, spec, defaults, zk=zk_paths_from_args(args) if spec.shielded else None)
    print(
        f"testnet {testnet.chain_name} (chain id {testnet.chain_id[:16]}) in {args.out}: "
        f"{spec.validators} validators, {spec.full_nodes} full nodes, {spec.accounts} accounts"
    )
    for line in describe_nodes(testnet):
        print(line)
    return 0
