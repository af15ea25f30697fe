"""Scenario files: parsed and validated in this one place.

A scenario is a TOML file (format and examples: ``docs/scenarios.md``)::

    [scenario]   name, description
    [cluster]    validators, full_nodes, accounts, balance; [cluster.defaults.<section>] node overrides
    [load]       rate (payments/s), duration_s, kind, payers, timeout_s
    [roles]      node name -> Byzantine role (validator roles or peer roles)
    [[step]]     at_s + action (kill, restart, start, pause, resume, partition, heal, slow, equivocate,
                 attack); kill / restart take ``node`` or a group ``nodes``; kill may wait for
                 ``when = "next_ack"``; attack takes ``node``, ``kind``, ``count``, ``duration_s``
    [expect]     optional expectations and bounds

Every error is one :class:`ConfigError` line naming the file and the key (``step[2].node``). Nothing
here starts a process or touches the network.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pnode.config import read_toml
from p2pnode.errors import ConfigError
from p2pnode.localnet import MAX_FULL_NODES, MAX_VALIDATORS, check_defaults
from p2pnode.testing.faults import PEER_ROLES, VALIDATOR_ROLES

ACTIONS = ("kill", "restart", "start", "pause", "resume", "partition", "heal", "slow", "equivocate", "attack")
# Client-port attacks the runner runs against a victim (``action = "attack"``, p2pnode.scenario.attacks).
ATTACK_KINDS = ("idle_clients", "slowloris", "half_frames", "long_waits")
MAX_ATTACK_COUNT = 5000  # connections (or concurrent requests) of one attack step
MAX_ATTACK_S = 600.0
LOAD_KINDS = ("transparent",)
NODE_GROUPS = ("all", "validators", "full_nodes")  # ``nodes = "<group>"`` of kill / restart
WHEN = ("next_ack",)  # kill: fire the instant a node acknowledges a payment as settled (after ``at_s``)

# Keys each action takes besides ``at_s`` and ``action``: name -> required.
_ACTION_KEYS: dict[str, dict[str, bool]] = {
    "kill": {"node": False, "nodes": False, "when": False},  # node or nodes (checked in _step)
    "restart": {"node": False, "nodes": False},
    "start": {"node": True},
    "pause": {"node": True},
    "resume": {"node": True},
    "partition": {"groups": True},
    "heal": {},
    "slow": {"node": True, "delay_ms": True},
    "equivocate": {"nodes": True, "count": False},
    "attack": {"node": True, "kind": True, "count": False, "duration_s": False},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterPart:
    validators: int
    full_nodes: int = 0
    accounts: int = 8
    balance: int = 1_000_000_000
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [f"node-{i}" for i in range(self.validators + self.full_nodes)]

    def is_validator(self, name: str) -> bool:
        return int(name.removeprefix("node-")) < self.validators


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    rate: float = 10.0  # payments per second, open loop
    duration_s: float = 20.0
    kind: str = "transparent"
    payers: int = 3  # concurrent payer tasks; each owns a share of the accounts
    timeout_s: float = 10.0  # per payment: submit until settled at the submitting node


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    at_s: float
    action: str
    node: str = ""
    nodes: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    delay_ms: int = 0
    count: int = 1
    group: str = ""  # the ``nodes = "<group>"`` a kill / restart named ("" for a list or one node)
    when: str = ""  # "" (at at_s) | "next_ack" (kill only: at the first acknowledgement after at_s)
    kind: str = ""  # attack: one of ATTACK_KINDS
    duration_s: float = 0.0  # attack: it stops by itself after this long

    @property
    def targets(self) -> tuple[str, ...]:
        """The nodes a kill / restart / start / pause / resume acts on."""
        return (self.node,) if self.node else self.nodes

    def describe(self) -> str:
        if self.action == "partition":
            return "partition " + " | ".join(",".join(g) for g in self.groups)
        if self.action == "slow":
            return f"slow {self.node} +{self.delay_ms}ms"
        if self.action == "equivocate":
            return f"equivocate x{self.count} via {','.join(self.nodes)}"
        if self.action == "attack":
            return f"attack {self.node} {self.kind} x{self.count} for {self.duration_s:g}s"
        if self.action in ("kill", "restart") and not self.node:
            what = f"{self.group} ({','.join(self.nodes)})" if self.group else ",".join(self.nodes)
            at = " at the next acknowledgement" if self.when == "next_ack" else ""
            return f"{self.action} {what}{at}"
        if self.when == "next_ack":
            return f"{self.action} {self.node} at the next acknowledgement"
        return f"{self.action} {self.node}".strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class Expect:
    violation: bool = False  # the scenario is built to break an invariant: the runner must catch it
    min_settled: int = 0
    accepted_settle: bool = False  # every order a node accepted settles by quiescence, client or not
    payers_can_pay: bool = False  # at the end every payer account settles one more payment (none frozen)
    final_payment_timeout_s: float = 20.0  # bound for each of those final payments
    max_byzantine_connections: int = 0  # per honest node and Byzantine peer; 0 = not checked
    no_certificates_during_partition: bool = False
    partition_grace_s: float = 1.0  # certificates whose votes were already in flight may still land
    max_rss_growth_mb: float = 200.0
    quiesce_timeout_s: float = 60.0
    max_latency_ratio: float = 0.0  # p99 under attack / p99 before it; 0 = not checked
    attacker_penalized: bool = False  # every honest node the attacker reached logged a refusal naming it


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str
    cluster: ClusterPart
    load: Load
    roles: Mapping[str, str]
    steps: tuple[Step, ...]
    expect: Expect
    source: Path | None = None

    @property
    def late_nodes(self) -> set[str]:
        """Nodes with a ``start`` step: not started with the cluster."""
        return {s.node for s in self.steps if s.action == "start"}

    @property
    def attacks(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.action == "attack")

    @property
    def equivocations(self) -> int:
        return sum(s.count for s in self.steps if s.action == "equivocate")

    def end_s(self) -> float:
        return max([self.load.duration_s, *(s.at_s for s in self.steps)])


# -- validation helpers -----------------------------------------------------------------------------------
def _table(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}]: expected a table")
    return value


def _known(table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key {prefix}.{key} (expected one of {', '.join(sorted(allowed))})")


def _int(table: Mapping[str, Any], key: str, prefix: str, default: int, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if type(value) is not int:
        raise ConfigError(f"{prefix}.{key}: expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{prefix}.{key}: {value} is outside [{lo}, {hi}]")
    return value


def _num(table: Mapping[str, Any], key: str, prefix: str, default: float, lo: float, hi: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{prefix}.{key}: expected a number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{prefix}.{key}: {value} is outside [{lo:g}, {hi:g}]")
    return float(value)


def _bool(table: Mapping[str, Any], key: str, prefix: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{prefix}.{key}: expected true or false, got {value!r}")
    return value


def _str(table: Mapping[str, Any], key: str, prefix: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{prefix}.{key}: expected a string, got {value!r}")
    return value


def _node(value: Any, key: str, names: list[str]) -> str:
    if not isinstance(value, str) or value not in names:
        raise ConfigError(f"{key}: {value!r} is not a node of this cluster ({names[0]}..{names[-1]})")
    return value


def _group(value: Any, key: str, cluster: ClusterPart) -> tuple[tuple[str, ...], str]:
    """``nodes`` of a kill / restart: a group name or a non-empty list of distinct node names."""
    names = cluster.names
    if isinstance(value, str):
        if value not in NODE_GROUPS:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(NODE_GROUPS)} or a list of names")
        members = {
            "all": names,
            "validators": [n for n in names if cluster.is_validator(n)],
            "full_nodes": [n for n in names if not cluster.is_validator(n)],
        }[value]
        if not members:
            raise ConfigError(f"{key}: {value!r} names no node of this cluster")
        return tuple(members), value
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: expected {', '.join(NODE_GROUPS)} or a non-empty list of node names")
    out = [_node(n, key, names) for n in value]
    if len(set(out)) != len(out):
        raise ConfigError(f"{key}: a node is named twice")
    return tuple(out), ""


# -- sections ---------------------------------------------------------------------------------------------
def _cluster(doc: Mapping[str, Any]) -> ClusterPart:
    t = _table(doc, "cluster")
    _known(t, "cluster", {"validators", "full_nodes", "accounts", "balance", "defaults"})
    if "validators" not in t:
        raise ConfigError("missing key cluster.validators")
    defaults = t.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError("cluster.defaults: expected tables [cluster.defaults.<section>]")
    try:
        check_defaults(defaults)
    except ConfigError as exc:
        raise ConfigError(f"cluster.{exc}") from None
    if "testing" in defaults:
        raise ConfigError("cluster.defaults.testing: set by the runner; use [roles] for Byzantine nodes")
    part = ClusterPart(
        validators=_int(t, "validators", "cluster", 4, 1, MAX_VALIDATORS),
        full_nodes=_int(t, "full_nodes", "cluster", 0, 0, MAX_FULL_NODES),
        accounts=_int(t, "accounts", "cluster", 8, 2, 4096),
        balance=_int(t, "balance", "cluster", 1_000_000_000, 1, 2**62),
        defaults=defaults,
    )
    if part.accounts * part.balance >= 2**64:
        raise ConfigError("cluster.balance: accounts * balance exceeds 2^64-1")
    return part


def _load(doc: Mapping[str, Any]) -> Load:
    t = _table(doc, "load")
    _known(t, "load", {"rate", "duration_s", "kind", "payers", "timeout_s"})
    kind = _str(t, "kind", "load", "transparent")
    if kind not in LOAD_KINDS:
        raise ConfigError(f"load.kind: {kind!r} is not one of {', '.join(LOAD_KINDS)}")
    return Load(
        rate=_num(t, "rate", "load", 10.0, 0.0, 1000.0),
        duration_s=_num(t, "duration_s", "load", 20.0, 0.0, 3600.0),
        kind=kind,
        payers=_int(t, "payers", "load", 3, 1, 64),
        timeout_s=_num(t, "timeout_s", "load", 10.0, 0.1, 600.0),
    )


def _roles(doc: Mapping[str, Any], cluster: ClusterPart) -> dict[str, str]:
    t = _table(doc, "roles")
    out: dict[str, str] = {}
    for name, role in t.items():
        _node(name, f"roles.{name}", cluster.names)
        if not isinstance(role, str) or role not in VALIDATOR_ROLES + PEER_ROLES:
            raise ConfigError(
                f"roles.{name}: {role!r} is not one of {', '.join(VALIDATOR_ROLES + PEER_ROLES)}"
            )
        if role in VALIDATOR_ROLES and not cluster.is_validator(name):
            raise ConfigError(f"roles.{name}: {role!r} is a validator role and {name} is a full node")
        out[name] = role
    return out


def _step(i: int, t: Any, cluster: ClusterPart) -> Step:
    prefix = f"step[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(f"{prefix}: expected a table ([[step]])")
    action = t.get("action")
    if action not in ACTIONS:
        raise ConfigError(f"{prefix}.action: {action!r} is not one of {', '.join(ACTIONS)}")
    keys = _ACTION_KEYS[action]
    _known(t, prefix, {"at_s", "action", *keys})
    for key, required in keys.items():
        if required and key not in t:
            raise ConfigError(f"missing key {prefix}.{key} (action {action!r} needs it)")
    if "at_s" not in t:
        raise ConfigError(f"missing key {prefix}.at_s")
    names = cluster.names
    kwargs: dict[str, Any] = {"at_s": _num(t, "at_s", prefix, 0.0, 0.0, 3600.0), "action": action}
    if "node" in t and "node" in keys:
        kwargs["node"] = _node(t["node"], f"{prefix}.node", names)
    if "delay_ms" in keys:
        kwargs["delay_ms"] = _int(t, "delay_ms", prefix, 0, 0, 60_000)
    if action == "attack":
        kind = _str(t, "kind", prefix, "")
        if kind not in ATTACK_KINDS:
            raise ConfigError(f"{prefix}.kind: {kind!r} is not one of {', '.join(ATTACK_KINDS)}")
        kwargs["kind"] = kind
        kwargs["count"] = _int(t, "count", prefix, 100, 1, MAX_ATTACK_COUNT)
        kwargs["duration_s"] = _num(t, "duration_s", prefix, 10.0, 0.1, MAX_ATTACK_S)
    elif "count" in keys:
        kwargs["count"] = _int(t, "count", prefix, 1, 1, 100)
    if action in ("kill", "restart"):
        if ("node" in t) == ("nodes" in t):
            raise ConfigError(
                f"missing key {prefix}.node (action {action!r} needs node or nodes)"
                if "node" not in t
                else f"{prefix}.nodes: give node or nodes, not both"
            )
        if "nodes" in t:
            kwargs["nodes"], kwargs["group"] = _group(t["nodes"], f"{prefix}.nodes", cluster)
        when = _str(t, "when", prefix, "")
        if when and when not in WHEN:
            raise ConfigError(f"{prefix}.when: {when!r} is not one of {', '.join(WHEN)}")
        kwargs["when"] = when
    elif "nodes" in keys:
        nodes = t["nodes"]
        if not isinstance(nodes, list) or len(nodes) != 2:
            raise ConfigError(f"{prefix}.nodes: expected two node names (one per conflicting order)")
        kwargs["nodes"] = tuple(_node(n, f"{prefix}.nodes", names) for n in nodes)
    if "groups" in keys:
        groups = t["groups"]
        if (
            not isinstance(groups, list)
            or len(groups) < 2
            or not all(isinstance(g, list) and g for g in groups)
        ):
            raise ConfigError(f"{prefix}.groups: expected at least two non-empty lists of node names")
        seen: list[str] = []
        for g in groups:
            for n in g:
                _node(n, f"{prefix}.groups", names)
                if n in seen:
                    raise ConfigError(f"{prefix}.groups: {n} is in more than one group")
                seen.append(n)
        kwargs["groups"] = tuple(tuple(g) for g in groups)
    return Step(**kwargs)


def _expect(doc: Mapping[str, Any]) -> Expect:
    t = _table(doc, "expect")
    _known(
        t,
        "expect",
        {
            "violation",
            "min_settled",
            "accepted_settle",
            "payers_can_pay",
            "final_payment_timeout_s",
            "max_byzantine_connections",
            "no_certificates_during_partition",
            "partition_grace_s",
            "max_rss_growth_mb",
            "quiesce_timeout_s",
            "max_latency_ratio",
            "attacker_penalized",
        },
    )
    return Expect(
        violation=_bool(t, "violation", "expect", False),
        min_settled=_int(t, "min_settled", "expect", 0, 0, 10_000_000),
        accepted_settle=_bool(t, "accepted_settle", "expect", False),
        payers_can_pay=_bool(t, "payers_can_pay", "expect", False),
        final_payment_timeout_s=_num(t, "final_payment_timeout_s", "expect", 20.0, 1.0, 600.0),
        max_byzantine_connections=_int(t, "max_byzantine_connections", "expect", 0, 0, 1_000_000),
        no_certificates_during_partition=_bool(t, "no_certificates_during_partition", "expect", False),
        partition_grace_s=_num(t, "partition_grace_s", "expect", 1.0, 0.0, 60.0),
        max_rss_growth_mb=_num(t, "max_rss_growth_mb", "expect", 200.0, 1.0, 65536.0),
        quiesce_timeout_s=_num(t, "quiesce_timeout_s", "expect", 60.0, 1.0, 3600.0),
        max_latency_ratio=_num(t, "max_latency_ratio", "expect", 0.0, 0.0, 1000.0),
        attacker_penalized=_bool(t, "attacker_penalized", "expect", False),
    )


def _check_timeline(steps: list[Step], cluster: ClusterPart) -> None:
    """Node state must make sense at every step: kill/pause a running node, restart a killed one."""
    state = dict.fromkeys(cluster.names, "up")
    for s in steps:
        if s.action == "start":
            state[s.node] = "late"
    for s in sorted(steps, key=lambda s: s.at_s):
        where = f"step[{steps.index(s)}]"
        need = {
            "kill": ("up", "paused"),
            "pause": ("up",),
            "resume": ("paused",),
            "restart": ("killed",),
            "start": ("late",),
            "attack": ("up", "paused"),
        }
        for node in s.targets if s.action in need else ():
            cur = state[node]
            if cur not in need[s.action]:
                raise ConfigError(f"{where}: cannot {s.action} {node} at {s.at_s:g}s: it is {cur} then")
            if s.action == "attack":
                continue  # the victim's state does not change
            state[node] = {
                "kill": "killed",
                "pause": "paused",
                "resume": "up",
                "restart": "up",
                "start": "up",
            }[s.action]


def scenario_from_dict(
    doc: Mapping[str, Any], name: str = "scenario", source: Path | None = None
) -> Scenario:
    """Validate a parsed scenario document; :class:`ConfigError` names the first bad key."""
    for key in doc:
        if key not in ("scenario", "cluster", "load", "roles", "step", "expect"):
            raise ConfigError(
                f"unknown section [{key}] (expected scenario, cluster, load, roles, step, expect)"
            )
    head = _table(doc, "scenario")
    _known(head, "scenario", {"name", "description"})
    cluster = _cluster(doc)
    raw_steps = doc.get("step", [])
    if not isinstance(raw_steps, list):
        raise ConfigError("step: expected [[step]] tables")
    steps = [_step(i, t, cluster) for i, t in enumerate(raw_steps)]
    _check_timeline(steps, cluster)
    scenario = Scenario(
        name=_str(head, "name", "scenario", name) or name,
        description=_str(head, "description", "scenario", ""),
        cluster=cluster,
        load=_load(doc),
        roles=_roles(doc, cluster),
        steps=tuple(sorted(steps, key=lambda s: s.at_s)),
        expect=_expect(doc),
        source=source,
    )
    if scenario.expect.no_certificates_during_partition:
        for i, st in enumerate(scenario.steps):
            left_out = [
                n for n in cluster.names if st.action == "partition" and not any(n in g for g in st.groups)
            ]
            if left_out:
                raise ConfigError(
                    f"step[{i}].groups: expect.no_certificates_during_partition needs every node in a group "
                    f"(nodes in no group keep their links and bridge the cut); missing {', '.join(left_out)}"
                )
    for i, st in enumerate(steps):
        if st.action == "attack" and st.node in scenario.roles:
            raise ConfigError(f"step[{i}].node: {st.node} has a Byzantine role; an attack's victim is honest")
    if scenario.expect.attacker_penalized and not scenario.attacks and not scenario.roles:
        raise ConfigError("expect.attacker_penalized: the scenario has no attack step and no Byzantine role")
    if scenario.equivocations and cluster.accounts < 3:
        raise ConfigError(
            "cluster.accounts: equivocate steps need at least 3 accounts (one is the equivocator)"
        )
    return scenario


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate ``path``. Raises :class:`ConfigError` as ``FILE: key: reason`` (one line)."""
    path = Path(path)
    doc = read_toml(path)
    try:
        return scenario_from_dict(doc, name=path.stem, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_scenario(text: str, name: str = "scenario") -> Scenario:
    """Validate scenario TOML given as text (tests)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
    return scenario_from_dict(doc, name=name)
