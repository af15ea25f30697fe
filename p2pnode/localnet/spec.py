"""What a local cluster is made of: :class:`ClusterSpec`, built in code or from a cluster definition file.

A cluster definition (``configs/local-*.toml``) holds ``[cluster]`` parameters (the fields of
:class:`ClusterSpec`), ``[defaults.<section>]`` tables copied into every node config and an optional
``[network]`` table (``profile = "network/aws-5.toml"``, relative to the definition file): the network
profile every node's links cross (docs/network.md). Nothing here writes a file or starts a process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from p2pnode.config import NodeConfig, config_from_dict, read_toml
from p2pnode.errors import ConfigError
from p2pnode.net.linkmodel import NetworkProfile, load_profile
from p2pnode.wire.types import U64_MAX

__all__ = [
    "DEFAULT_BALANCE",
    "MAX_FULL_NODES",
    "MAX_HOST_LEN",
    "MAX_VALIDATORS",
    "ClusterSpec",
    "check_defaults",
    "load_cluster_definition",
]

DEFAULT_BALANCE = 1_000_000_000
# A certificate carries at most 256 signatures (wire limit), so a quorum must fit in 256.
MAX_VALIDATORS = 256
MAX_FULL_NODES = 1024
# Hosts travel in Peers messages, which bound them to 64 characters.
MAX_HOST_LEN = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """Parameters of a generated cluster.

    ``base_port`` None (or 0, as in a definition file) picks free ports, else node i listens on
    ``base_port + i``; ``defaults`` are node config sections (``{"peers": {"target": 6}}``) copied into
    every node config; ``network`` a network profile file: nodes are placed on its regions
    (``profile.place``) and each gets a ``[network]`` section. :meth:`validate` checks ranges;
    :func:`~p2pnode.localnet.write_cluster` calls it.
    """

    validators: int = 4
    full_nodes: int = 0
    accounts: int = 8
    balance: int = DEFAULT_BALANCE
    shielded: bool = True  # carry the shielded pool's verifying key in the genesis
    host: str = "127.0.0.1"
    base_port: int | None = None
    chain_name: str = "local"
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    network: Path | None = None

    @classmethod
    def from_file(cls, path: Path, **overrides: Any) -> ClusterSpec:
        """The spec of a cluster definition file, with ``overrides`` (``None`` values are ignored) on top.

        Error handling: :class:`ConfigError` naming the file and the key for an unknown section or key,
        a value of the wrong type, a default that is not a valid node config value, or a value out of
        range; ``TypeError`` for an override that is not a :class:`ClusterSpec` field.
        """
        params, defaults = load_cluster_definition(path)
        spec = cls(**params, defaults=defaults, network=_network_table(path)).with_overrides(**overrides)
        try:
            spec.validate()
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return spec

    def with_overrides(self, **overrides: Any) -> ClusterSpec:
        """A copy with every non-``None`` override applied (``TypeError`` for an unknown name)."""
        for key in overrides:
            if key not in _SPEC_TYPES and key != "network":
                raise TypeError(f"unknown cluster parameter {key}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def nodes(self) -> int:
        return self.validators + self.full_nodes

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
        n = self.nodes
        if self.base_port and not 1 <= self.base_port <= 65536 - n:
            raise ConfigError(f"base_port: {self.base_port} leaves no room for {n} ports below 65536")
        if self.base_port is not None and self.base_port < 0:
            raise ConfigError(f"base_port: {self.base_port} is negative")
        if not self.chain_name or len(self.chain_name) > 64 or any(ord(c) < 32 for c in self.chain_name):
            raise ConfigError("chain_name: expected 1 to 64 printable characters")
        check_defaults(self.defaults)
        self.profile()

    def profile(self) -> NetworkProfile | None:
        """The network profile, loaded (:class:`ConfigError` naming ``network.profile`` if it does not)."""
        if self.network is None:
            return None
        try:
            return load_profile(self.network)
        except ConfigError as exc:
            raise ConfigError(f"network.profile: {exc}") from None


_SPEC_TYPES: dict[str, type] = {
    f.name: (str if f.name in ("host", "chain_name") else bool if f.name == "shielded" else int)
    for f in fields(ClusterSpec)
    if f.name not in ("defaults", "network")
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
        if key not in ("cluster", "defaults", "network"):
            raise ConfigError(
                f"{path}: unknown section [{key}] (expected [cluster], [defaults.*] and [network])"
            )
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


def _network_table(path: Path) -> Path | None:
    """The ``[network]`` table of a definition file: its profile, relative to the file."""
    table = read_toml(path).get("network")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [network]: expected a table")
    for key in table:
        if key != "profile":
            raise ConfigError(f"{path}: unknown key network.{key} (known: profile)")
    profile = table.get("profile")
    if not isinstance(profile, str) or not profile:
        raise ConfigError(f"{path}: network.profile: expected the path of a network profile")
    p = Path(profile)
    return p if p.is_absolute() else Path(path).resolve().parent / p


def check_defaults(defaults: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless ``defaults`` is valid as the common part of a node config."""
    for section, table in defaults.items():
        if section == "node":
            raise ConfigError("defaults.node: the [node] section is written per node and cannot be defaulted")
        if section == "network":
            raise ConfigError(
                "defaults.network: each node's region differs; use a [network] table (or --network)"
            )
        if section not in _DEFAULTABLE:
            raise ConfigError(f"unknown section [defaults.{section}] (one of {', '.join(_DEFAULTABLE)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"defaults.{section}: expected a table")
        if section == "log" and "file" in table:
            raise ConfigError("defaults.log.file: every node logs to its own file; it cannot be shared")
    probe = {"node": {"key_file": "k", "genesis": "g", "data_dir": "d"}}
    probe.update({k: dict(v) for k, v in defaults.items()})
    try:
        config_from_dict(probe, Path("."))
    except ConfigError as exc:
        raise ConfigError(f"defaults: {exc}") from None
