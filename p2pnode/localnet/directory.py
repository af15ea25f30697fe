"""A cluster directory: keys, genesis and one config per node, written and read back.

Layout (every path inside a node config is relative to the directory)::

    genesis.toml              validators (node ids) and funded accounts; its hash is the chain id
    keys/node-<i>.key         hex of the node's 32-byte Ed25519 seed, one line, mode 0600
    accounts/account-<i>.json {"address", "spending_key", "public"} (hex), mode 0600
    node-<i>.toml             nodes 0..N-1 are validators, N..N+M-1 full nodes
    cluster.json              names, roles, addresses, node ids, log files, regions: what
                              :func:`read_cluster` reads
    network/<profile>.toml    the network profile, if the cluster has one (a copy: the directory is
                              self-contained); every node config's [network] section names it
    logs/, data/              node logs and databases (written by the nodes)

Network profile (``spec.network``): nodes are placed on its regions with ``profile.place`` (node i in
region i mod R unless the profile pins it), and each node config gets ``[network]`` with the profile,
its region and the ``HOST:PORT=REGION`` of every other node.

Bootstrap: one address each. Node 0 knows node 1, the other validators know node 0, and full node i
knows validator ``(i - validators) mod validators``: the validators are the cluster's seed nodes, so a
64-node cluster's sixty full nodes arrive at four nodes (fifteen each, below one node's inbound slots
and its burst of handshakes from new peers) rather than all at node 0. Peer exchange finds the rest.
Everything written is loaded back with the node's own loaders before :func:`write_cluster` returns.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pnode.config import NodeConfig, load_config
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.errors import ConfigError, LocalError
from p2pnode.genesis import chain_id_of, load_genesis, render_genesis
from p2pnode.localnet.spec import ClusterSpec
from p2pnode.net.links import link_model

if TYPE_CHECKING:
    from p2pnode.zk.paths import ZkPaths

__all__ = [
    "CLUSTER_FILE",
    "GENESIS_FILE",
    "AccountEntry",
    "ClusterDir",
    "NodeEntry",
    "free_ports",
    "read_cluster",
    "render_node_config",
    "write_cluster",
]

CLUSTER_FILE = "cluster.json"
GENESIS_FILE = "genesis.toml"


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One node of a cluster, as recorded in ``cluster.json`` (paths absolute)."""

    name: str
    role: str  # "validator" | "full"
    host: str
    port: int
    node_id: str  # hex of the node's public key
    config: Path
    log: Path  # the node's JSON log
    region: str = ""  # its region in the cluster's network profile ("" without one)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AccountEntry:
    """One funded account: its file (``{"address", "spending_key", "public"}``, secret) and address."""

    name: str
    path: Path
    address: bytes


@dataclass(frozen=True, slots=True)
class ClusterDir:
    """What a cluster directory holds (``cluster.json`` and the account files it names)."""

    directory: Path
    chain_id: bytes
    nodes: tuple[NodeEntry, ...]
    accounts: tuple[AccountEntry, ...]
    chain_name: str = ""
    # The network profile: {"file" (relative), "name", "regions", "median_rtt_ms", "source"}; None: none.
    network: Mapping[str, Any] | None = None

    def node(self, name: str) -> NodeEntry:
        """The entry of ``name``; :class:`LocalError` naming the known nodes if there is none."""
        for entry in self.nodes:
            if entry.name == name:
                return entry
        raise LocalError(f"{self.directory}: no node named {name!r} (have {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def validators(self) -> int:
        return sum(1 for n in self.nodes if n.role == "validator")

    def out_path(self, name: str) -> Path:
        """The node's stdout and stderr (appended across restarts by :class:`~p2pnode.localnet.LocalNet`)."""
        return self.directory / "logs" / f"{self.node(name).name}.out"

    def to_json(self) -> dict[str, Any]:
        def rel(p: Path) -> str:
            return str(p.relative_to(self.directory)) if p.is_relative_to(self.directory) else str(p)

        doc: dict[str, Any] = {
            "chain_name": self.chain_name,
            "chain_id": self.chain_id.hex(),
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "host": n.host,
                    "port": n.port,
                    "config": rel(n.config),
                    "log": rel(n.log),
                    "node_id": n.node_id,
                    **({"region": n.region} if n.region else {}),
                }
                for n in self.nodes
            ],
            "accounts": [rel(a.path) for a in self.accounts],
        }
        if self.network is not None:
            doc["network"] = dict(self.network)
        return doc


def read_cluster(directory: Path) -> ClusterDir:
    """Read ``DIR/cluster.json`` and the addresses of its account files.

    Error handling: :class:`LocalError` naming the file if it is missing or malformed.
    """
    directory = Path(directory).resolve()
    path = directory / CLUSTER_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        nodes = tuple(
            NodeEntry(
                name=str(n["name"]),
                role=str(n["role"]),
                host=str(n["host"]),
                port=int(n["port"]),
                node_id=str(n["node_id"]),
                config=directory / str(n["config"]),
                log=directory / str(n.get("log", f"logs/{n['name']}.log")),
                region=str(n.get("region", "")),
            )
            for n in doc["nodes"]
        )
        network = doc.get("network")
        if network is not None and not isinstance(network, dict):
            raise ValueError("network: expected an object")
        chain_id = bytes.fromhex(str(doc["chain_id"]))
        chain_name = str(doc.get("chain_name", ""))
        account_files = [directory / str(a) for a in doc["accounts"]]
    except FileNotFoundError:
        raise LocalError(f"{path}: no such file (create the cluster with `p2pnode testnet`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LocalError(f"{path}: malformed cluster file: {exc}") from None
    accounts = []
    for apath in account_files:
        try:
            address = bytes.fromhex(json.loads(apath.read_text(encoding="utf-8"))["address"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LocalError(f"{apath}: cannot read the account file: {exc}") from None
        accounts.append(AccountEntry(name=apath.stem, path=apath, address=address))
    return ClusterDir(
        directory=directory,
        chain_id=chain_id,
        nodes=nodes,
        accounts=tuple(accounts),
        chain_name=chain_name,
        network=network,
    )


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


def write_cluster(
    spec: ClusterSpec,
    directory: Path,
    *,
    zk: ZkPaths | None = None,
    log: Callable[[str], None] | None = None,
) -> ClusterDir:
    """Generate keys, genesis and node configs for ``spec`` under ``directory`` and check they load.

    ``zk`` locates the circuit keys of a shielded pool (default :func:`p2pnode.zk.paths.find_zk_paths`);
    ``log`` receives progress lines while circuit keys are made for the first time.

    Error handling: :class:`LocalError` if ``directory`` already holds a cluster (keys are never
    overwritten); :class:`ConfigError` for a bad spec. Files written before an error stay behind.
    """
    spec.validate()
    out = Path(directory).resolve()
    for existing in (CLUSTER_FILE, GENESIS_FILE, "keys", "accounts"):
        if (out / existing).exists():
            raise LocalError(
                f"{directory}: already holds a testnet ({existing}); remove it or use another directory"
            )
    if out.exists() and not out.is_dir():
        raise LocalError(f"{directory}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / "keys").mkdir(mode=0o700)  # secrets: readable by the owner only
    (out / "accounts").mkdir(mode=0o700)
    (out / "logs").mkdir(exist_ok=True)
    (out / "data").mkdir(exist_ok=True)

    n = spec.nodes
    ports = [spec.base_port + i for i in range(n)] if spec.base_port else free_ports(spec.host, n)
    names = [f"node-{i}" for i in range(n)]
    profile = spec.profile()
    regions = profile.place(names) if profile is not None else {}
    network: dict[str, Any] | None = None
    if profile is not None and spec.network is not None:
        (out / "network").mkdir(exist_ok=True)
        copy = Path("network") / spec.network.name
        (out / copy).write_bytes(spec.network.read_bytes())
        network = {"file": str(copy), **profile.describe()}

    keys = [NodeKey.generate() for _ in range(n)]
    for i, key in enumerate(keys):
        _write_secret(out / "keys" / f"node-{i}.key", key.seed.hex() + "\n")

    accounts: list[AccountEntry] = []
    for i in range(spec.accounts):
        sk = SpendingKey.generate()
        address = address_of(sk.public)
        path = out / "accounts" / f"account-{i}.json"
        doc = {"address": address.hex(), "spending_key": sk.to_bytes().hex(), "public": sk.public.hex()}
        _write_secret(path, json.dumps(doc, indent=2) + "\n")
        accounts.append(AccountEntry(name=path.stem, path=path, address=address))

    vk: str | None = None
    if spec.shielded:
        from p2pnode.zk.setup import ensure_circuit_keys

        zk_dir = ensure_circuit_keys(zk, log=log)
        vk = (zk_dir / "verification_key.json").read_text(encoding="utf-8")
    genesis_text = render_genesis(
        spec.chain_name,
        [(f"node-{i}", keys[i].public) for i in range(spec.validators)],
        [(a.address, spec.balance) for a in accounts],
        shielded_vk=vk,
    )
    (out / GENESIS_FILE).write_text(genesis_text, encoding="utf-8")
    chain_id = chain_id_of(genesis_text.encode("utf-8"))

    nodes: list[NodeEntry] = []
    for i in range(n):
        name = f"node-{i}"
        role = "validator" if i < spec.validators else "full"
        boot_index = _bootstrap_index(i, spec.validators)
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
        if network is not None:
            sections["network"] = {
                "profile": network["file"],
                "region": regions[name],
                "peers": [f"{spec.host}:{ports[j]}={regions[names[j]]}" for j in range(n) if j != i],
            }
        for section, table in spec.defaults.items():
            sections.setdefault(section, {}).update(table)
        header = f"{name} ({role}) of chain {spec.chain_name!r}, written by `p2pnode testnet`.\n"
        header += "Paths are relative to this file's directory. Every key: configs/defaults.toml."
        (out / f"{name}.toml").write_text(render_node_config(sections, header), encoding="utf-8")
        nodes.append(
            NodeEntry(
                name=name,
                role=role,
                host=spec.host,
                port=ports[i],
                node_id=keys[i].public.hex(),
                config=out / f"{name}.toml",
                log=out / "logs" / f"{name}.log",
                region=regions.get(name, ""),
            )
        )

    cluster = ClusterDir(
        directory=out,
        chain_id=chain_id,
        nodes=tuple(nodes),
        accounts=tuple(accounts),
        chain_name=spec.chain_name,
        network=network,
    )
    (out / CLUSTER_FILE).write_text(json.dumps(cluster.to_json(), indent=2) + "\n", encoding="utf-8")
    check_cluster(cluster)
    return cluster


def _bootstrap_index(i: int, validators: int) -> int:
    """The node that node ``i`` is told about (see the module docstring); ``i`` itself if there is no
    other (a cluster of one)."""
    if i == 0:
        return 1
    if i < validators:
        return 0
    return (i - validators) % validators


def check_cluster(cluster: ClusterDir) -> None:
    """Load everything back with the node's loaders; :class:`LocalError` on any disagreement."""
    genesis = load_genesis(cluster.directory / GENESIS_FILE)
    if genesis.chain_id != cluster.chain_id:
        raise LocalError(f"{cluster.directory}: genesis chain id does not match {CLUSTER_FILE}")
    committee = {v.node_id.hex() for v in genesis.validators}
    for entry in cluster.nodes:
        cfg = load_config(entry.config)
        seed = bytes.fromhex(cfg.node.key_file.read_text(encoding="ascii").strip())
        if NodeKey.from_seed(seed).public.hex() != entry.node_id:
            raise LocalError(f"{cfg.node.key_file}: key does not match node id of {entry.name}")
        if (entry.node_id in committee) != (entry.role == "validator"):
            raise LocalError(f"{entry.name}: role {entry.role} disagrees with the genesis committee")
        if cfg.node.listen != entry.address:
            raise LocalError(f"{entry.name}: listen {cfg.node.listen} disagrees with {CLUSTER_FILE}")
        model = link_model(cfg)  # the profile loads and has every region named
        if (model.region if model is not None else "") != entry.region:
            raise LocalError(f"{entry.name}: network.region disagrees with {CLUSTER_FILE}")
