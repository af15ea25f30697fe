"""Network profiles and the link model: what a frame costs to cross from one region to another.

Sans-I/O: pure data and arithmetic on a clock the caller passes in. The Trio transport wrapper
(real clusters, on Trio's clock, virtual under ``MockClock``) and the simulator (its own virtual
clock) both ask :class:`LinkState` when bytes handed to a link arrive, so there is one link model
with two clocks. The file format is documented in ``docs/network.md``.

A profile names regions, a one-way delay matrix in milliseconds (row = from, column = to), and per
link jitter, loss and bandwidth (profile-wide defaults, optionally overridden per pair), plus how
nodes are placed on regions (round-robin by node index, or an explicit name -> region table for some).
The rules of one direction of a connection (serialization at the link's bandwidth, then its delay
plus a normal jitter draw clipped at 0, a loss costing one RTO of ``max(MIN_RTO_S, 2 * delay)``, and
never overtaking the chunk ahead) are stated for users in ``docs/network.md``, "What one link does";
:meth:`LinkState.due` is their one implementation.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pnode.errors import ConfigError

MIN_RTO_S = 0.2  # Linux's TCP_RTO_MIN
PLACEMENTS = ("round-robin", "explicit")


@dataclass(frozen=True, slots=True)
class Link:
    """One direction between two regions."""

    delay_ms: float
    jitter_ms: float = 0.0
    loss: float = 0.0
    bandwidth_mbps: float = 0.0  # 0: unlimited


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    name: str
    source: str
    regions: tuple[str, ...]
    delay_ms: Mapping[tuple[str, str], float]
    defaults: Link
    overrides: Mapping[tuple[str, str], Link] = field(default_factory=dict)
    jitter_pct: float = 0.0  # jitter as a percentage of each link's delay, on top of jitter_ms
    placement: str = "round-robin"
    assigned: Mapping[str, str] = field(default_factory=dict)  # node name -> region
    path: Path | None = None

    def link(self, a: str, b: str) -> Link:
        """The link from region ``a`` to region ``b`` (``a == b``: within a region)."""
        over = self.overrides.get((a, b))
        if over is not None:
            return over
        d = self.defaults
        delay = self.delay_ms[(a, b)]
        return Link(delay, d.jitter_ms + delay * self.jitter_pct / 100, d.loss, d.bandwidth_mbps)

    def place(self, names: Sequence[str]) -> dict[str, str]:
        """Each node's region: the explicit table first, round-robin over ``regions`` for the rest
        (by position in ``names``, so node i of a cluster lands in region i mod R). With
        ``placement.mode = "explicit"`` every node must be in the table (ConfigError otherwise)."""
        out: dict[str, str] = {}
        for i, name in enumerate(names):
            region = self.assigned.get(name)
            if region is None:
                if self.placement == "explicit":
                    raise ConfigError(
                        f"network profile {self.name!r}: placement.nodes names no region for {name}"
                    )
                region = self.regions[i % len(self.regions)]
            out[name] = region
        return out

    def rtt_ms(self, a: str, b: str) -> float:
        return self.link(a, b).delay_ms + self.link(b, a).delay_ms

    def median_rtt_ms(self) -> float:
        """The median round trip over pairs of distinct regions (one region: its own round trip)."""
        pairs = [(a, b) for i, a in enumerate(self.regions) for b in self.regions[i + 1 :]]
        if not pairs:
            r = self.regions[0]
            return self.rtt_ms(r, r)
        return statistics.median(self.rtt_ms(a, b) for a, b in pairs)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "regions": list(self.regions),
            "median_rtt_ms": round(self.median_rtt_ms(), 3),
            "source": self.source,
        }


class LinkState:
    """One direction of one connection: when the bytes handed to it now arrive at the far end.

    ``rng`` draws jitter and loss; give each link its own, seeded, for reproducible runs."""

    __slots__ = ("link", "rng", "_busy_until", "_last_due", "_sd", "_delay", "_rate", "_rto")

    def __init__(self, link: Link, rng: random.Random) -> None:
        self.link = link
        self.rng = rng
        self._busy_until = float("-inf")
        self._last_due = float("-inf")
        self._delay = link.delay_ms / 1000
        self._sd = link.jitter_ms / 1000
        self._rate = link.bandwidth_mbps * 1e6 / 8  # bytes per second; 0 unlimited
        self._rto = max(MIN_RTO_S, 2 * self._delay)

    def due(self, now: float, nbytes: int) -> float:
        """The time (on the caller's clock, seconds) at which ``nbytes`` handed over at ``now`` arrive."""
        start = max(now, self._busy_until)
        if self._rate:
            start += nbytes / self._rate
            self._busy_until = start
        delay = self._delay
        if self._sd:
            delay = max(0.0, self.rng.gauss(delay, self._sd))
        if self.link.loss and self.rng.random() < self.link.loss:
            delay += self._rto
        due = max(start + delay, self._last_due)
        self._last_due = due
        return due


# == loading ========================================================================================
def _number(where: str, value: Any, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: {value} is outside [{lo:g}, {hi:g}]")
    return float(value)


def _link_fields(where: str, table: Mapping[str, Any], base: Link) -> Link:
    known = {"delay_ms", "jitter_ms", "loss", "bandwidth_mbps"}
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    return Link(
        delay_ms=_number(f"{where}.delay_ms", table.get("delay_ms", base.delay_ms)),
        jitter_ms=_number(f"{where}.jitter_ms", table.get("jitter_ms", base.jitter_ms)),
        loss=_number(f"{where}.loss", table.get("loss", base.loss), 0.0, 0.5),
        bandwidth_mbps=_number(f"{where}.bandwidth_mbps", table.get("bandwidth_mbps", base.bandwidth_mbps)),
    )


def profile_from_dict(data: Mapping[str, Any], where: str = "network profile") -> NetworkProfile:
    """A profile from its TOML table; :class:`ConfigError` naming the key for anything wrong."""
    known = {"name", "source", "regions", "delay_ms", "defaults", "links", "placement"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    regions = data.get("regions")
    if not isinstance(regions, list) or not regions or not all(isinstance(r, str) and r for r in regions):
        raise ConfigError(f"{where}: regions: expected a non-empty list of region names")
    if len(set(regions)) != len(regions):
        raise ConfigError(f"{where}: regions: a region is named twice")
    rows = data.get("delay_ms")
    if not isinstance(rows, Mapping):
        raise ConfigError(f"{where}: missing table [delay_ms] (one row of one-way delays per region)")
    delay: dict[tuple[str, str], float] = {}
    for a in regions:
        row = rows.get(a)
        if not isinstance(row, list) or len(row) != len(regions):
            raise ConfigError(f"{where}: delay_ms.{a}: expected {len(regions)} numbers (one per region)")
        for b, v in zip(regions, row, strict=True):
            delay[(a, b)] = _number(f"{where}: delay_ms.{a} (to {b})", v)
    for a in rows:
        if a not in regions:
            raise ConfigError(f"{where}: delay_ms.{a}: not one of the regions")
    defaults_table = data.get("defaults", {})
    if not isinstance(defaults_table, Mapping) or "delay_ms" in defaults_table:
        raise ConfigError(f"{where}: [defaults]: a table of jitter_ms, jitter_pct, loss, bandwidth_mbps")
    defaults_table = dict(defaults_table)
    jitter_pct = _number(f"{where}: defaults.jitter_pct", defaults_table.pop("jitter_pct", 0.0), 0.0, 100.0)
    defaults = _link_fields(f"{where}: defaults", defaults_table, Link(0.0))
    overrides: dict[tuple[str, str], Link] = {}
    for name, table in dict(data.get("links", {})).items():
        a, sep, b = str(name).partition("->")
        a, b = a.strip(), b.strip()
        if not sep or a not in regions or b not in regions:
            raise ConfigError(f'{where}: links.{name!r}: expected "FROM -> TO" naming two regions')
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: links.{name!r}: expected a table")
        jitter = defaults.jitter_ms + delay[(a, b)] * jitter_pct / 100
        base = Link(delay[(a, b)], jitter, defaults.loss, defaults.bandwidth_mbps)
        overrides[(a, b)] = _link_fields(f"{where}: links.{name!r}", table, base)
    placement = data.get("placement", {})
    if not isinstance(placement, Mapping):
        raise ConfigError(f"{where}: [placement]: expected a table")
    mode = placement.get("mode", "round-robin")
    if mode not in PLACEMENTS:
        raise ConfigError(f"{where}: placement.mode: {mode!r} is not one of {', '.join(PLACEMENTS)}")
    nodes = placement.get("nodes", {})
    if not isinstance(nodes, Mapping):
        raise ConfigError(f"{where}: placement.nodes: expected a table of node name = region")
    for key in placement:
        if key not in ("mode", "nodes"):
            raise ConfigError(f"{where}: placement: unknown key {key!r} (known: mode, nodes)")
    for node, region in nodes.items():
        if region not in regions:
            raise ConfigError(f"{where}: placement.nodes.{node}: {region!r} is not one of the regions")
    if mode == "explicit" and not nodes:
        raise ConfigError(f'{where}: placement.mode = "explicit" needs placement.nodes')
    return NetworkProfile(
        name=str(data.get("name", "")),
        source=str(data.get("source", "")),
        regions=tuple(regions),
        delay_ms=delay,
        defaults=defaults,
        overrides=overrides,
        jitter_pct=jitter_pct,
        placement=mode,
        assigned={str(k): str(v) for k, v in nodes.items()},
    )


def load_profile(path: Path | str) -> NetworkProfile:
    """Read a profile file (``configs/network/*.toml``); ConfigError naming the file otherwise."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read network profile: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return dataclasses.replace(profile_from_dict(data, str(p)), path=p)


__all__ = ["Link", "LinkState", "MIN_RTO_S", "NetworkProfile", "load_profile", "profile_from_dict"]
