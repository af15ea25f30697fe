"""The result of ``p2pnode latency``: report types, their JSON form, and the text tables.

:class:`Report` and its parts round-trip through ``to_json``/``from_json``; :func:`render_report` and
:func:`render_stages` format them for a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from p2pnode.tools.stats import Stats, record_from_json, record_to_json

__all__ = [
    "JSON_VERSION",
    "SEGMENTS",
    "SEGMENT_LABELS",
    "STAGES",
    "STAGE_LABELS",
    "NodeReport",
    "Rejection",
    "Report",
    "SkewFinding",
    "Unsettled",
    "render_report",
    "render_stages",
]

JSON_VERSION = 1

STAGES: tuple[str, ...] = (
    "received",
    "verified",
    "first_vote",
    "certificate",
    "applied_first",
    "applied_median",
    "applied_last",
)
STAGE_LABELS: dict[str, str] = {
    "received": "order received (per node)",
    "verified": "proof verified (per node)",
    "first_vote": "first vote sent",
    "certificate": "certificate formed (first)",
    "applied_first": "applied, first node",
    "applied_median": "applied, median node",
    "applied_last": "applied, last node",
}


# The critical path of one payment (p2pnode.tools.latency.critical_path), in order; they add up to the
# time until the last node applied it. Kinds: "wait" is queueing (for the verifier, for other validators'
# votes); "work" the verification call itself; "commit" the validator's durable lock commit and signing
# (the store's group commit dominates it; signing is tens of microseconds); "delivery" the
# time from one node's log line to the next node's (gossip: the sender's queue, the wire, the receiver's
# backlog; on one busy host mostly the nodes' queues, not wire time);
# "mixed" the time a certificate is held for earlier seqs plus applying it.
SEGMENTS: tuple[str, ...] = (
    "gossip",
    "verify_queue",
    "verify",
    "vote",
    "quorum",
    "cert_spread",
    "apply",
)
SEGMENT_LABELS: dict[str, str] = {
    "gossip": "order to deciding validator",
    "verify_queue": "waiting for the verifier",
    "verify": "proof verification call",
    "vote": "lock commit + sign vote",
    "quorum": "waiting for quorum votes",
    "cert_spread": "certificate to last node",
    "apply": "cert → applied (held+apply)",
}
SEGMENT_KIND: dict[str, str] = {
    "gossip": "delivery",
    "verify_queue": "wait",
    "verify": "work",
    "vote": "commit",
    "quorum": "wait",
    "cert_spread": "delivery",
    "apply": "mixed",
}


@dataclass(frozen=True, kw_only=True)
class NodeReport:
    """One node's view: its delays after submit (ms), its proof verification time (us) and batch size."""

    node: str
    role: str | None
    orders: int  # payments whose order this node received
    applied: int  # payments this node applied
    received: Stats
    verified: Stats
    applied_ms: Stats
    verify_us: Stats
    batch_mean: float | None
    proof_failures: int

    def to_json(self) -> dict[str, Any]:
        return record_to_json(self)

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> NodeReport:
        return record_from_json(
            cls,
            o,
            received=Stats.from_json,
            verified=Stats.from_json,
            applied_ms=Stats.from_json,
            verify_us=Stats.from_json,
        )


@dataclass(frozen=True, kw_only=True)
class Unsettled:
    """A payment not applied on every node seen in the logs, with the furthest event it reached."""

    tx: str
    last_stage: str
    applied_nodes: int
    nodes: int
    missing: tuple[str, ...]  # nodes that did not apply it
    rejections: dict[str, int]  # message_rejected reasons naming this tx ("proof invalid" for ok=false)

    def to_json(self) -> dict[str, Any]:
        return record_to_json(self)

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> Unsettled:
        return record_from_json(cls, o, missing=tuple, rejections=dict)


@dataclass(frozen=True, kw_only=True)
class Rejection:
    reason: str
    kind: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return record_to_json(self)

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> Rejection:
        return record_from_json(cls, o)


@dataclass(frozen=True, kw_only=True)
class SkewFinding:
    """Events at ``node`` that precede their cause at ``reference`` by more than the tolerance.

    ``pairs`` causal pairs were compared; ``violations`` of them ran backwards. ``worst_ms`` and
    ``median_ms`` are ``effect - cause`` over all pairs (negative: the effect was logged first).
    """

    node: str
    reference: str
    pairs: int
    violations: int
    worst_ms: float
    median_ms: float

    def to_json(self) -> dict[str, Any]:
        return record_to_json(self)

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> SkewFinding:
        return record_from_json(cls, o)


@dataclass(frozen=True, kw_only=True)
class Report:
    """Everything :func:`analyze` found. ``to_json``/``from_json`` round-trip (``samples`` excepted).

    ``samples`` keeps the raw per-stage samples (ms) for plotting, and ``paths`` each payment's
    critical path (ms per :data:`SEGMENTS`); neither is part of the JSON document nor of equality.
    ``selection`` says how the payments were picked (``--run``, ``--since``/``--until``), ``None``
    when every payment in the logs counts. ``ci95`` holds, per stage and segment, the 95 % intervals of
    its p50/p90/p99 (:func:`p2pnode.tools.stats.percentile_ci`), which ``--compare`` uses as the run's
    spread.
    """

    files: tuple[str, ...]
    nodes: tuple[str, ...]
    lines: int
    malformed: int
    payments: int
    settled: int
    unanchored: int
    stages: dict[str, Stats]
    per_node: tuple[NodeReport, ...]
    hops: dict[str, dict[int, int]]
    unsettled: tuple[Unsettled, ...]
    rejected: tuple[Rejection, ...]
    skew: tuple[SkewFinding, ...]
    warnings: tuple[str, ...]
    selection: str | None = None
    segments: dict[str, Stats] = field(default_factory=dict)
    ci95: dict[str, dict[str, list[float] | None]] = field(default_factory=dict)
    samples: dict[str, tuple[float, ...]] = field(default_factory=dict, compare=False, repr=False)
    paths: tuple[tuple[float, ...], ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "files": list(self.files),
            "nodes": list(self.nodes),
            "lines": self.lines,
            "malformed_lines": self.malformed,
            "payments": self.payments,
            "settled": self.settled,
            "unanchored": self.unanchored,
            "stages": {name: self.stages[name].to_json() for name in STAGES},
            "per_node": [n.to_json() for n in self.per_node],
            "hops": {
                kind: {str(h): c for h, c in sorted(d.items())} for kind, d in sorted(self.hops.items())
            },
            "unsettled": [u.to_json() for u in self.unsettled],
            "rejected": [r.to_json() for r in self.rejected],
            "skew": [s.to_json() for s in self.skew],
            "warnings": list(self.warnings),
            "selection": self.selection,
            "segments": {name: self.segments[name].to_json() for name in SEGMENTS if name in self.segments},
            "ci95": {k: dict(v) for k, v in sorted(self.ci95.items())},
        }

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> Report:
        if o.get("version") != JSON_VERSION:
            raise ValueError(f"unsupported latency report version {o.get('version')!r}")
        return cls(
            files=tuple(o["files"]),
            nodes=tuple(o["nodes"]),
            lines=o["lines"],
            malformed=o["malformed_lines"],
            payments=o["payments"],
            settled=o["settled"],
            unanchored=o["unanchored"],
            stages={k: Stats.from_json(v) for k, v in o["stages"].items()},
            per_node=tuple(NodeReport.from_json(n) for n in o["per_node"]),
            hops={k: {int(h): c for h, c in v.items()} for k, v in o["hops"].items()},
            unsettled=tuple(Unsettled.from_json(u) for u in o["unsettled"]),
            rejected=tuple(Rejection.from_json(r) for r in o["rejected"]),
            skew=tuple(SkewFinding.from_json(s) for s in o["skew"]),
            warnings=tuple(o["warnings"]),
            # Added in later revisions of version 1: absent from older documents.
            selection=o.get("selection"),
            segments={k: Stats.from_json(v) for k, v in o.get("segments", {}).items()},
            ci95={k: dict(v) for k, v in o.get("ci95", {}).items()},
        )


# == output ================================================================================================
def _fmt(v: float | None, width: int = 9) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.3f}"


def render_stages(report: Report) -> str:
    """The stage table: one row per stage, ms after submit."""
    head = f"{'stage (ms after submit)':<28}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
    rows = [head, "-" * len(head)]
    for name in STAGES:
        s = report.stages[name]
        rows.append(
            f"{STAGE_LABELS[name]:<28}{s.count:>7}{_fmt(s.p50)}{_fmt(s.p90)}{_fmt(s.p99)}{_fmt(s.max)}"
        )
    return "\n".join(rows)


def render_segments(report: Report) -> str:
    """The critical-path table: where each payment's time went, queueing (wait) apart from work."""
    head = f"{'critical path (ms)':<30}{'kind':<9}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
    rows = [head, "-" * len(head)]
    for name in SEGMENTS:
        s = report.segments.get(name)
        if s is None:
            continue
        rows.append(
            f"{SEGMENT_LABELS[name]:<30}{SEGMENT_KIND[name]:<9}{s.count:>7}{_fmt(s.p50)}{_fmt(s.p90)}"
            f"{_fmt(s.p99)}{_fmt(s.max)}"
        )
    return "\n".join(rows)


def render_report(report: Report) -> str:
    """The whole report as aligned text tables, for a terminal."""
    out: list[str] = []
    out.append(
        f"{len(report.nodes)} nodes, {report.payments} payments "
        f"({report.settled} applied on every node), {report.lines} lines from {len(report.files)} files"
    )
    if report.selection:
        out.append(f"selected: {report.selection}")
    if report.malformed:
        out.append(f"skipped {report.malformed} malformed lines")
    out += ["", render_stages(report), ""]
    if any(s.count for s in report.segments.values()):
        out += [render_segments(report), ""]

    head = (
        f"{'node':<14}{'role':<10}{'orders':>7}{'applied':>8}{'recv p50':>10}{'verif p50':>10}"
        f"{'appl p50':>10}{'appl p99':>10}{'verify us p50':>14}{'p99':>12}{'batch':>7}"
    )
    out += [head, "-" * len(head)]
    for n in report.per_node:
        batch = "-" if n.batch_mean is None else f"{n.batch_mean:.1f}"
        out.append(
            f"{n.node:<14}{(n.role or '-'):<10}{n.orders:>7}{n.applied:>8}{_fmt(n.received.p50, 10)}"
            f"{_fmt(n.verified.p50, 10)}{_fmt(n.applied_ms.p50, 10)}{_fmt(n.applied_ms.p99, 10)}"
            f"{_fmt(n.verify_us.p50, 14)}{_fmt(n.verify_us.p99, 12)}{batch:>7}"
        )

    out += ["", "hop counts (messages received after h hops; 0 = from a client or the node that made it)"]
    for kind in ("order", "vote", "certificate"):
        dist = report.hops.get(kind, {})
        text = "  ".join(f"{h}:{c}" for h, c in sorted(dist.items())) or "-"
        out.append(f"  {kind:<12}{text}")

    if report.rejected:
        out += ["", f"{'rejected messages: reason':<48}{'kind':<14}{'count':>7}"]
        for r in report.rejected:
            out.append(f"  {r.reason[:46]:<46}{r.kind:<14}{r.count:>7}")

    if report.unsettled:
        out += ["", f"not applied on every node: {len(report.unsettled)} payments"]
        out.append(f"  {'tx':<18}{'applied':>9}  {'last stage':<22}missing / rejections")
        for u in report.unsettled[:50]:
            why = ", ".join(f"{r} x{c}" for r, c in sorted(u.rejections.items()))
            missing = ",".join(u.missing[:6]) + ("..." if len(u.missing) > 6 else "")
            out.append(
                f"  {u.tx[:16]:<18}{f'{u.applied_nodes}/{u.nodes}':>9}  {u.last_stage:<22}{missing}"
                + (f"  [{why}]" if why else "")
            )
        if len(report.unsettled) > 50:
            out.append(f"  ... and {len(report.unsettled) - 50} more (see --json)")

    if report.warnings:
        out += ["", "warnings:"] + [f"  {w}" for w in report.warnings]
    return "\n".join(out)
