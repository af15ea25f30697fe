"""Node configuration and genesis: loaded from TOML and validated in this one place.

Every key is documented in ``configs/defaults.toml``. An unknown key, a missing file or a bad value
raises :class:`ConfigError` whose message names the file and the key; the CLI prints it as one line.
Relative paths in a node config are resolved against the directory of that config file.

Environment variables are read here and nowhere else (:func:`zk_environment`): only the locations of the
shielded pool's Node.js toolchain and circuit-key cache come from the environment; a node's behaviour
never does.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pnode.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSection:
    key_file: Path
    genesis: Path
    data_dir: Path
    listen: str = "127.0.0.1:7000"
    bootstrap: tuple[str, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSection:
    file: Path | None = None
    format: str = "auto"  # json | console | auto (console on a terminal, else json)
    level: str = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipSection:
    eager_fanout: int = 2
    origin_fanout: int = 8
    lazy_fanout: int = 64
    lazy_unproven: int = 8
    heartbeat_ms: int = 50
    seen_cache_size: int = 200_000
    seen_ttl_s: int = 300
    iwant_timeout_ms: int = 400
    iwant_followup_ms: int = 3000
    max_ihave: int = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class PeersSection:
    target: int = 8
    max_connections: int = 32
    max_inbound: int = 24
    max_outbound: int = 8
    dial_backoff_min_ms: int = 200
    dial_backoff_max_ms: int = 10_000
    keepalive_s: float = 5.0
    idle_timeout_s: float = 20.0
    handshake_timeout_s: float = 5.0
    send_queue: int = 4096
    send_queue_bytes: int = 4 << 20
    write_timeout_s: float = 10.0
    exchange_interval_s: float = 2.0
    ban_s: float = 60.0
    ping_rate: float = 1.0
    ping_burst: int = 8
    get_peers_rate: float = 0.5
    get_peers_burst: int = 4
    rate_limit_strikes: int = 20
    useless_rate: float = 2.0
    useless_burst: int = 100
    stranger_rx_rate: int = 1 << 18
    handshake_rate: float = 16.0
    handshake_burst: int = 16
    stranger_rx_burst: int = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsSection:
    max_frame: int = 1 << 20
    client_max_frame: int = 1 << 16
    pending_orders: int = 20_000
    held_certificates: int = 20_000
    future_seqs: int = 16
    held_order_s: float = 30.0
    request_timeout_s: float = 30.0
    max_clients: int = 128
    client_idle_s: float = 60.0
    frame_timeout_s: float = 10.0
    fd_reserve: int = 64
    inline_commit_ms_per_s: int = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncSection:
    interval_ms: int = 1000
    batch: int = 256
    reply_factor: float = 2.0
    credit_max_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifySection:
    workers: int = 1
    inline_ms_per_s: int = 100
    batch_max: int = 64
    new_source_batch: int = 4
    certificate_proofs: bool = True
    per_source_rate: float = 500.0
    per_source_burst: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSection:
    """The Prometheus endpoint (docs/metrics.md). Off unless ``listen`` is set."""

    listen: str = ""  # HOST:PORT of the HTTP endpoint; "" = none and nothing observed; port 0 = any free
    tracked_payments: int = 10_000  # payments whose stage times are kept until they are applied here


@dataclass(frozen=True, slots=True, kw_only=True)
class TestingSection:
    """Fault injection and Byzantine behaviour, for scenario tests only. Off unless ``enabled``."""

    enabled: bool = False
    byzantine: str = ""  # a role of p2pnode.testing.faults.BEHAVIOURS (checked where faults are built)
    fault_control: bool = False  # accept FaultControl requests (partitions, slow links) on the node port


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSection:
    """A network profile on this node's links (docs/network.md). Off unless ``profile`` is set."""

    profile: Path | None = None  # a network profile file (configs/network/*.toml)
    region: str = ""  # this node's region in the profile
    peers: tuple[str, ...] = ()  # "HOST:PORT=REGION" of every address this node may dial
    seed: int = 0  # seeds the jitter and loss draws (with the node's name and the remote address)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    node: NodeSection
    log: LogSection = field(default_factory=LogSection)
    gossip: GossipSection = field(default_factory=GossipSection)
    peers: PeersSection = field(default_factory=PeersSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    sync: SyncSection = field(default_factory=SyncSection)
    verify: VerifySection = field(default_factory=VerifySection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    testing: TestingSection = field(default_factory=TestingSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    source: Path | None = None


# Bounds for numeric keys: (min, max). Keys not listed must be >= 0.
_BOUNDS: dict[str, tuple[float, float]] = {
    "gossip.eager_fanout": (1, 64),
    "gossip.origin_fanout": (1, 256),
    "gossip.lazy_fanout": (0, 1024),
    "gossip.lazy_unproven": (0, 1024),
    "gossip.heartbeat_ms": (5, 10_000),
    "gossip.seen_cache_size": (1024, 10_000_000),
    "gossip.seen_ttl_s": (1, 86_400),
    "gossip.iwant_timeout_ms": (10, 60_000),
    "gossip.iwant_followup_ms": (10, 600_000),
    "gossip.max_ihave": (1, 1024),
    "peers.target": (1, 256),
    "peers.max_connections": (1, 4096),
    "peers.max_inbound": (1, 4096),
    "peers.max_outbound": (1, 256),
    "peers.dial_backoff_min_ms": (1, 600_000),
    "peers.dial_backoff_max_ms": (1, 3_600_000),
    "peers.keepalive_s": (0.05, 3600),
    "peers.idle_timeout_s": (0.1, 86_400),
    "peers.handshake_timeout_s": (0.05, 600),
    "peers.send_queue": (16, 1_000_000),
    "peers.send_queue_bytes": (1024, 1 << 30),
    "peers.write_timeout_s": (0.05, 3600),
    "peers.exchange_interval_s": (0.05, 3600),
    "peers.ban_s": (0.0, 86_400),
    "peers.ping_rate": (0.01, 10_000),
    "peers.ping_burst": (1, 100_000),
    "peers.get_peers_rate": (0.01, 10_000),
    "peers.get_peers_burst": (1, 100_000),
    "peers.rate_limit_strikes": (1, 1_000_000),
    "peers.useless_rate": (0.0, 1_000_000),
    "peers.stranger_rx_rate": (1024, 1 << 32),
    "peers.handshake_rate": (0.1, 100_000),
    "peers.handshake_burst": (1, 100_000),
    "peers.stranger_rx_burst": (1024, 1 << 32),
    "peers.useless_burst": (1, 10_000_000),
    "limits.max_frame": (1024, 64 << 20),
    "limits.client_max_frame": (1024, 64 << 20),
    "limits.pending_orders": (16, 10_000_000),
    "limits.held_certificates": (16, 10_000_000),
    "limits.future_seqs": (1, 100_000),
    "limits.held_order_s": (0.1, 86_400),
    "limits.request_timeout_s": (0.1, 3600),
    "limits.max_clients": (1, 65_536),
    "limits.client_idle_s": (0.05, 86_400),
    "limits.frame_timeout_s": (0.05, 3600),
    "limits.fd_reserve": (8, 65_536),
    "limits.inline_commit_ms_per_s": (0, 1000),
    "sync.interval_ms": (10, 3_600_000),
    "sync.batch": (1, 512),
    "sync.reply_factor": (0.1, 1000),
    "sync.credit_max_bytes": (1024, 1 << 30),
    "verify.workers": (0, 64),
    "verify.inline_ms_per_s": (0, 1000),
    "verify.batch_max": (1, 1024),
    "verify.new_source_batch": (1, 1024),
    "verify.per_source_rate": (0.1, 1_000_000),
    "verify.per_source_burst": (1, 10_000_000),
    "metrics.tracked_payments": (16, 10_000_000),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "log.format": ("json", "console", "auto"),
    "log.level": ("debug", "info", "warning", "error"),
}


def parse_peer_region(text: str, *, key: str) -> tuple[str, str]:
    """One ``network.peers`` entry, ``"HOST:PORT=REGION"``, as (address, region)."""
    addr, sep, region = text.rpartition("=")
    addr, region = addr.strip(), region.strip()
    if not sep or not region:
        raise ConfigError(f"{key}: expected HOST:PORT=REGION, got {text!r}")
    parse_hostport(addr, key=key)
    return addr, region


def parse_hostport(text: str, *, key: str = "address", any_port: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` split; port 0 (any free port) only with ``any_port``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not (0 if any_port else 1) <= int(port) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT, got {text!r}")
    return host, int(port)


def _coerce(key: str, hint: Any, value: Any, base: Path) -> Any:
    origin = typing.get_origin(hint)
    if hint is Path or (origin in (types.UnionType, typing.Union) and Path in typing.get_args(hint)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a path string")
        p = Path(value)
        return p if p.is_absolute() else (base / p)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int or hint is float:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if hint is float:
            ok = ok or isinstance(value, float)
        if not ok:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        lo, hi = _BOUNDS.get(key, (0, float("inf")))
        if not lo <= value <= hi:
            raise ConfigError(f"{key}: {value} is outside [{lo:g}, {hi:g}]")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        choices = _CHOICES.get(key)
        if choices and value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings")
        return tuple(value)
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover - our own schema


def _build_section(cls: type[Any], name: str, table: Any, base: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}]: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in table:
            kwargs[f.name] = _coerce(f"{name}.{f.name}", hints[f.name], table[f.name], base)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {name}.{f.name}")
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], base: Path, source: Path | None = None) -> NodeConfig:
    hints = typing.get_type_hints(NodeConfig)
    sections: dict[str, Any] = {}
    for name in data:
        if name not in hints or name == "source":
            raise ConfigError(f"unknown section [{name}]")
    if "node" not in data:
        raise ConfigError("missing section [node]")
    for name, value in data.items():
        sections[name] = _build_section(hints[name], name, value, base)
    cfg = NodeConfig(**sections, source=source)
    parse_hostport(cfg.node.listen, key="node.listen")
    if cfg.metrics.listen:
        parse_hostport(cfg.metrics.listen, key="metrics.listen", any_port=True)
    for i, peer in enumerate(cfg.node.bootstrap):
        parse_hostport(peer, key=f"node.bootstrap[{i}]")
    if (cfg.testing.byzantine or cfg.testing.fault_control) and not cfg.testing.enabled:
        raise ConfigError("testing.byzantine and testing.fault_control need testing.enabled = true")
    _check_network(cfg.network)
    if cfg.peers.dial_backoff_max_ms < cfg.peers.dial_backoff_min_ms:
        raise ConfigError("peers.dial_backoff_max_ms: must be >= peers.dial_backoff_min_ms")
    if cfg.peers.max_inbound + cfg.peers.max_outbound > cfg.peers.max_connections:
        # max_connections stays the total (what the open-file budget is fitted to); both kinds fit in it.
        raise ConfigError("peers.max_inbound + peers.max_outbound: must be <= peers.max_connections")
    if cfg.verify.new_source_batch > cfg.verify.batch_max:
        raise ConfigError("verify.new_source_batch: must be <= verify.batch_max")
    if cfg.limits.client_max_frame > cfg.limits.max_frame:
        raise ConfigError("limits.client_max_frame: must be <= limits.max_frame")
    if cfg.peers.send_queue_bytes < cfg.limits.max_frame:
        # A message as large as a frame may be must fit in a peer's queue, or it could never be sent.
        raise ConfigError("peers.send_queue_bytes: must be >= limits.max_frame")
    return cfg


def _check_network(net: NetworkSection) -> None:
    """The [network] section's own shape; whether the profile loads and has these regions is checked
    where the link model is built (p2pnode.net.links.link_model), which may read the profile."""
    if net.profile is None:
        if net.region or net.peers:
            raise ConfigError("network.region and network.peers need network.profile")
        return
    if not net.region:
        raise ConfigError("network.region: missing (this node's region in network.profile)")
    for i, entry in enumerate(net.peers):
        parse_peer_region(entry, key=f"network.peers[{i}]")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_config(path: Path) -> NodeConfig:
    """Load and validate one node's config. Raises :class:`ConfigError` naming the file and key."""
    path = Path(path)
    data = read_toml(path)
    try:
        return config_from_dict(data, path.resolve().parent, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# -- environment ----------------------------------------------------------------------------------------
ENV_NODE_MODULES = "P2PNODE_NODE_MODULES"
ENV_ZK_CACHE = "P2PNODE_ZK_CACHE"


@dataclass(frozen=True, slots=True, kw_only=True)
class ZkEnvironment:
    """What the environment says about the shielded pool's files; :mod:`p2pnode.zk.paths` decides.

    ``node_modules``: ``$P2PNODE_NODE_MODULES`` (a ``node_modules`` directory or the one holding it).
    ``cache``: ``$P2PNODE_ZK_CACHE`` (the circuit-key cache). ``user_cache``: ``$XDG_CACHE_HOME`` if it
    is an absolute path (the XDG rule), else ``~/.cache``; ``None`` when there is no home directory.
    Empty variables count as unset; relative paths are taken against the current directory.
    """

    node_modules: Path | None = None
    cache: Path | None = None
    user_cache: Path | None = None


def zk_environment(environ: Mapping[str, str] | None = None) -> ZkEnvironment:
    """Read the variables of :class:`ZkEnvironment` from ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ

    def path(name: str) -> Path | None:
        value = env.get(name, "")
        return Path(value).expanduser().absolute() if value else None

    xdg = env.get("XDG_CACHE_HOME", "")
    user_cache: Path | None
    if xdg and Path(xdg).is_absolute():
        user_cache = Path(xdg)
    else:
        home = env.get("HOME", "")
        if not home:
            try:
                home = str(Path.home())
            except RuntimeError:  # no $HOME and no passwd entry
                home = ""
        user_cache = Path(home) / ".cache" if home else None
    return ZkEnvironment(node_modules=path(ENV_NODE_MODULES), cache=path(ENV_ZK_CACHE), user_cache=user_cache)
