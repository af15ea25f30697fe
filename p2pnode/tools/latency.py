"""``p2pnode latency``: where the time of each payment went, from the nodes' JSON logs.

Every node writes one JSON object per line (schema: ``docs/logs.md``). Payment events carry ``tx``, the hex
transfer digest, so one payment can be followed across every node's log. :func:`analyze` joins the events
of all files by ``tx`` and measures each stage relative to the payment's **submit time**: the earliest
``order_submitted`` of that payment on any node, or, when no log holds one, its earliest
``order_received``. A payment with neither is *unanchored*: it is checked for settlement but gives no
latency samples.

Stages (milliseconds after submit):

* ``received``: first ``order_received`` at each node (one sample per node and payment: gossip spread);
* ``verified``: first ``proof_verified`` with ``ok`` true at each node;
* ``first_vote``: earliest ``vote_sent`` of any validator;
* ``certificate``: earliest ``certificate_formed`` on any node;
* ``applied_first`` / ``applied_median`` / ``applied_last``: with N the number of nodes seen in the logs
  and the payment's per-node first ``certificate_applied`` times sorted, the time by which 1,
  ``ceil(N/2)`` and N nodes had applied it. A rank that was never reached gives no sample, so
  ``applied_last`` counts only payments applied on every node.

Percentiles use the **nearest-rank** method: for ``n`` sorted samples the p-th percentile is the sample
of rank ``ceil(p/100 * n)`` (rank 1 for p = 0). It always returns an observed value and needs no
interpolation; :func:`p2pnode.tools.stats.percentile` is the one implementation, shared with
``p2pnode bench``.

Clock skew: the nodes' timestamps are wall clocks, comparable only if the hosts' clocks agree. Causality
gives a check: a node cannot receive an order before it was submitted, a vote before its validator sent
it, or a certificate before the first one was formed. Each such pair of events on different nodes that
runs backwards by more than :data:`SKEW_TOLERANCE_NS` is counted, per (node, reference node), and reported
as a warning with the worst and the median offset seen.

Bad input is tolerated: a line that is not a JSON object with an integer ``ts_ns`` and a string ``event``
(or a payment event without ``tx``) is counted as malformed and skipped; nodes missing from the logs are
simply not counted; logs holding only some events give only the stages they can.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pnode.tools.latency_plot import write_plot
from p2pnode.tools.latency_report import (
    JSON_VERSION,
    SEGMENTS,
    STAGES,
    NodeReport,
    Rejection,
    Report,
    SkewFinding,
    Unsettled,
    render_report,
    render_stages,
)
from p2pnode.tools.stats import Stats, percentile, percentile_ci, round3

__all__ = [
    "JSON_VERSION",
    "NodeReport",
    "Rejection",
    "Report",
    "SkewFinding",
    "Stats",
    "Unsettled",
    "Collected",
    "analyze",
    "collect",
    "critical_path",
    "summarize",
    "LatencyRun",
    "run_latency",
    "percentile",
    "render_report",
    "render_stages",
    "write_plot",
]

SKEW_TOLERANCE_NS = 1_000_000  # 1 ms: below this, ordering noise between processes is expected
_NS_PER_MS = 1e6

# Progress of a payment, in causal order; the last one reached names where an unsettled payment stopped.
_PROGRESS: tuple[str, ...] = (
    "order_submitted",
    "order_received",
    "proof_verified",
    "vote_sent",
    "vote_received",
    "certificate_formed",
    "certificate_received",
    "certificate_applied",
)
PAYMENT_EVENTS = frozenset(_PROGRESS)
# Written by ``p2pnode bench`` into every node's log at the start and the end of its load (docs/logs.md).
RUN_MARKER = "run_marker"
_HOP_KINDS = {"order_received": "order", "vote_received": "vote", "certificate_received": "certificate"}


# == analysis ==============================================================================================
class _Tx:
    """Everything the logs say about one payment: per event, the earliest timestamp at each node."""

    __slots__ = ("first", "peer_of", "proof_failed", "rejections", "verify_start", "votes_in")

    def __init__(self) -> None:
        self.first: dict[str, dict[str, int]] = defaultdict(dict)  # event -> node -> min ts_ns
        # node -> start of the verification call of the first ok proof_verified (ts_ns - duration_us)
        self.verify_start: dict[str, int] = {}
        # (event, node) -> hex16 of the peer its first order_received / certificate_received came from
        self.peer_of: dict[tuple[str, str], str] = {}
        self.votes_in: dict[tuple[str, str], int] = {}  # (receiver node, validator hex16) -> min ts_ns
        self.proof_failed: set[str] = set()
        self.rejections: Counter[str] = Counter()

    def see(self, event: str, node: str, ts: int) -> None:
        per_node = self.first[event]
        old = per_node.get(node)
        if old is None or ts < old:
            per_node[node] = ts

    def earliest(self, event: str) -> tuple[int, str] | None:
        per_node = self.first.get(event)
        if not per_node:
            return None
        node = min(per_node, key=lambda n: (per_node[n], n))
        return per_node[node], node

    def anchor(self) -> int | None:
        got = self.earliest("order_submitted") or self.earliest("order_received")
        return None if got is None else got[0]


def _parse(line: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    if not isinstance(obj, dict):
        return None
    ts, event = obj.get("ts_ns"), obj.get("event")
    if type(ts) is not int or not isinstance(event, str):
        return None
    if event in PAYMENT_EVENTS and not isinstance(obj.get("tx"), str):
        return None
    return obj


@dataclass(frozen=True, slots=True, kw_only=True)
class Collected:
    """What :func:`collect` gathered from the logs: every payment's events, the nodes, their roles."""

    files: tuple[str, ...]
    payments: Mapping[str, _Tx]
    nodes: tuple[str, ...]
    node_by_id: Mapping[str, str]
    roles: Mapping[str, str]
    verify_us: Mapping[str, list[float]]
    batches: Mapping[str, list[int]]
    hops: Mapping[str, Counter[int]]
    rejected_tx: Counter[tuple[str, str]]
    rejected_untagged: list[tuple[int, str, str]]
    warnings: list[str]
    lines: int
    malformed: int
    filtered: bool


def analyze(lines_by_file: Mapping[str, Iterable[str]], *, txs: Collection[str] | None = None) -> Report:
    """Join every file's events by ``tx`` and measure the stages (see the module docstring).

    ``lines_by_file`` maps a file name to its lines (read lazily, once). A line without a ``node`` field
    is attributed to its file's stem. ``txs``, if given, restricts payments to those digests (lower-case
    hex); the node set is still every node seen, and rejections without a ``tx`` are then counted only
    within the time span of the selected payments.
    """
    return summarize(collect(lines_by_file, txs=txs))


def collect(lines_by_file: Mapping[str, Iterable[str]], *, txs: Collection[str] | None = None) -> Collected:
    """Read every line once and group the payment events by ``tx`` (the first half of :func:`analyze`)."""
    wanted = None if txs is None else {t.lower() for t in txs}
    payments: dict[str, _Tx] = defaultdict(_Tx)
    nodes: set[str] = set()
    node_by_id: dict[str, str] = {}
    roles: dict[str, str] = {}
    verify_us: dict[str, list[float]] = defaultdict(list)
    batches: dict[str, list[int]] = defaultdict(list)
    hops: dict[str, Counter[int]] = {kind: Counter() for kind in _HOP_KINDS.values()}
    rejected_tx: Counter[tuple[str, str]] = Counter()
    rejected_untagged: list[tuple[int, str, str]] = []
    warnings: list[str] = []
    lines = malformed = 0

    for fname, source in lines_by_file.items():
        valid_here = 0
        default_node = Path(fname).stem
        for raw in source:
            if not raw.strip():
                continue
            lines += 1
            obj = _parse(raw)
            if obj is None:
                malformed += 1
                continue
            valid_here += 1
            event: str = obj["event"]
            if event == RUN_MARKER:
                continue  # written by p2pnode bench into the node's file: not a node event
            node = obj.get("node")
            if not isinstance(node, str):
                node = default_node
            nodes.add(node)
            node_id = obj.get("node_id")
            if isinstance(node_id, str) and node_id:
                node_by_id.setdefault(node_id[:16].lower(), node)
            ts: int = obj["ts_ns"]
            if event == "node_started" and isinstance(obj.get("role"), str):
                roles[node] = obj["role"]
                continue
            if event == "message_rejected":
                reason, kind = str(obj.get("reason", "?")), str(obj.get("kind", "?"))
                tx_r = obj.get("tx")
                if isinstance(tx_r, str) and tx_r:
                    tx_r = tx_r.lower()
                    if wanted is None or tx_r in wanted:
                        rejected_tx[(reason, kind)] += 1
                        payments[tx_r].rejections[reason] += 1
                else:
                    rejected_untagged.append((ts, reason, kind))
                continue
            if event not in PAYMENT_EVENTS:
                continue
            tx = obj["tx"].lower()
            if wanted is not None and tx not in wanted:
                continue
            p = payments[tx]
            if event == "proof_verified":
                duration = obj.get("duration_us")
                if isinstance(duration, int | float):
                    verify_us[node].append(float(duration))
                if type(obj.get("batch")) is int:
                    batches[node].append(obj["batch"])
                if obj.get("ok") is not True:
                    p.proof_failed.add(node)
                    continue
                old_v = p.first["proof_verified"].get(node)
                if (old_v is None or ts < old_v) and isinstance(duration, int | float) and duration >= 0:
                    p.verify_start[node] = ts - round(duration * 1000)
            if event in ("order_received", "certificate_received") and isinstance(obj.get("peer"), str):
                old_r = p.first[event].get(node)
                if old_r is None or ts < old_r:
                    p.peer_of[(event, node)] = obj["peer"][:16].lower()
            p.see(event, node, ts)
            kind_h = _HOP_KINDS.get(event)
            if kind_h is not None and type(obj.get("hops")) is int:
                hops[kind_h][obj["hops"]] += 1
            if event == "vote_received" and isinstance(obj.get("validator"), str):
                key = (node, obj["validator"][:16].lower())
                old = p.votes_in.get(key)
                if old is None or ts < old:
                    p.votes_in[key] = ts
        if valid_here == 0:
            warnings.append(f"{fname}: no valid log lines")
    return Collected(
        files=tuple(lines_by_file),
        payments=payments,
        nodes=tuple(sorted(nodes)),
        node_by_id=node_by_id,
        roles=roles,
        verify_us=verify_us,
        batches=batches,
        hops=hops,
        rejected_tx=rejected_tx,
        rejected_untagged=rejected_untagged,
        warnings=warnings,
        lines=lines,
        malformed=malformed,
        filtered=wanted is not None,
    )


def summarize(col: Collected, *, selection: str | None = None, notes: Sequence[str] = ()) -> Report:
    """The report of what :func:`collect` gathered (the second half of :func:`analyze`); ``selection``
    describes how the payments were picked (``--run`` / ``--since`` / ``--until``), if they were;
    ``notes`` are added to the warnings."""
    payments, node_by_id, roles = col.payments, col.node_by_id, col.roles
    verify_us, batches, hops = col.verify_us, col.batches, col.hops
    rejected_tx, rejected_untagged = col.rejected_tx, col.rejected_untagged
    warnings = [*col.warnings, *notes]
    lines, malformed = col.lines, col.malformed
    wanted = True if col.filtered else None
    node_list = col.nodes
    n_nodes = len(node_list)
    stage_samples: dict[str, list[float]] = {s: [] for s in STAGES}
    node_received: dict[str, list[float]] = defaultdict(list)
    node_verified: dict[str, list[float]] = defaultdict(list)
    node_applied: dict[str, list[float]] = defaultdict(list)
    node_orders: Counter[str] = Counter()
    node_applied_count: Counter[str] = Counter()
    proof_failures: Counter[str] = Counter()
    skew_pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
    unsettled: list[Unsettled] = []
    settled = unanchored = 0
    span_lo: int | None = None
    span_hi: int | None = None
    ranks = {"applied_first": 1, "applied_median": max(1, math.ceil(n_nodes / 2)), "applied_last": n_nodes}
    rank_samples: dict[str, list[float]] = {f"{e}_{r}": [] for e in ("received", "verified") for r in _RANKS}
    paths: list[tuple[float, ...]] = []

    def order_key(item: tuple[str, _Tx]) -> tuple[int, str]:
        a = item[1].anchor()
        return (a if a is not None else 2**63, item[0])

    for tx, p in sorted(payments.items(), key=order_key):
        for n in p.proof_failed:
            proof_failures[n] += 1
        for by_node in p.first.values():
            for ts in by_node.values():
                span_lo = ts if span_lo is None else min(span_lo, ts)
                span_hi = ts if span_hi is None else max(span_hi, ts)
        for n in p.first.get("order_received", {}):
            node_orders[n] += 1
        applied = p.first.get("certificate_applied", {})
        for n in applied:
            node_applied_count[n] += 1
        anchor = p.anchor()
        if anchor is None:
            unanchored += 1
        else:
            _stage_samples(p, anchor, ranks, stage_samples, node_received, node_verified, node_applied)
            _rank_samples(p, anchor, rank_samples)
            path = critical_path(p, anchor)
            if path is not None:
                paths.append(path)
            _causal_pairs(p, node_by_id, skew_pairs)
        if len(applied) >= n_nodes:
            settled += 1
        else:
            unsettled.append(_unsettled(tx, p, node_list))

    rejected = Counter(rejected_tx)
    for ts, reason, kind in rejected_untagged:
        if wanted is None or (span_lo is not None and span_hi is not None and span_lo <= ts <= span_hi):
            rejected[(reason, kind)] += 1

    skew = _skew_findings(skew_pairs)
    for s in skew:
        warnings.append(
            f"clock skew? {s.violations} of {s.pairs} events at {s.node} precede their cause at "
            f"{s.reference} by up to {-s.worst_ms:.3f} ms (median offset {s.median_ms:.3f} ms); "
            f"delays measured at {s.node} are unreliable"
        )
    if unanchored:
        warnings.append(
            f"{unanchored} payments have no order_submitted or order_received: no latency for them"
        )

    per_node = tuple(
        NodeReport(
            node=n,
            role=roles.get(n),
            orders=node_orders[n],
            applied=node_applied_count[n],
            received=Stats.of(node_received[n]),
            verified=Stats.of(node_verified[n]),
            applied_ms=Stats.of(node_applied[n]),
            verify_us=Stats.of(verify_us[n], unit="us"),
            batch_mean=round3(statistics.fmean(batches[n])) if batches[n] else None,
            proof_failures=proof_failures[n],
        )
        for n in node_list
    )
    seg_samples = {name: sorted(pth[i] for pth in paths) for i, name in enumerate(SEGMENTS)}
    samples = {s: tuple(sorted(v)) for s, v in stage_samples.items()}
    samples.update({s: tuple(sorted(v)) for s, v in rank_samples.items()})
    return Report(
        files=col.files,
        nodes=node_list,
        lines=lines,
        malformed=malformed,
        payments=len(payments),
        settled=settled,
        unanchored=unanchored,
        stages={s: Stats.of(stage_samples[s]) for s in STAGES},
        per_node=per_node,
        hops={kind: dict(sorted(c.items())) for kind, c in hops.items()},
        unsettled=tuple(unsettled),
        rejected=tuple(
            Rejection(reason=r, kind=k, count=c)
            for (r, k), c in sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        skew=skew,
        warnings=tuple(warnings),
        selection=selection,
        segments={name: Stats.of(v) for name, v in seg_samples.items()},
        ci95={
            **{s: percentile_ci(samples[s]) for s in STAGES},
            **{name: percentile_ci(v) for name, v in seg_samples.items()},
        },
        samples=samples,
        paths=tuple(paths),
    )


_RANKS = ("first", "median", "last")


def _rank_samples(p: _Tx, anchor: int, out: dict[str, list[float]]) -> None:
    """Per payment, the time by which the first, the median and the last node that logged the event
    had it (for ``received`` and ``verified``; the ranks count only the nodes that logged it)."""
    for event, stage in (("order_received", "received"), ("proof_verified", "verified")):
        times = sorted(p.first.get(event, {}).values())
        if not times:
            continue
        for rank, idx in zip(_RANKS, (0, math.ceil(len(times) / 2) - 1, len(times) - 1), strict=True):
            out[f"{stage}_{rank}"].append(_ms(times[idx] - anchor))


def critical_path(p: _Tx, anchor: int) -> tuple[float, ...] | None:
    """The payment's settlement split into :data:`SEGMENTS` (ms), along its critical path.

    The certificate formed when the last vote it needed arrived. Of the validators whose vote was sent
    by the time the first certificate formed, the one that sent it last is the *deciding validator*
    ``v``; the *last node* ``x`` is the node that applied the payment last. The segments are
    submit → order received at ``v`` → its verification call started (``proof_verified`` time minus
    ``duration_us``) → proof verified → ``v``'s vote sent → certificate formed (first, anywhere) →
    certificate at ``x`` (its ``certificate_received``, or the forming time if ``x`` formed it) →
    applied at ``x``. They add up to the time until ``x`` applied it. ``None`` when an event on the path
    is missing from the logs.
    """
    formed = p.earliest("certificate_formed")
    applied = p.first.get("certificate_applied", {})
    if formed is None or not applied:
        return None
    t_formed, former = formed
    voted = {n: ts for n, ts in p.first.get("vote_sent", {}).items() if ts <= t_formed}
    if not voted:
        return None
    v = max(voted, key=lambda n: (voted[n], n))
    t_recv = p.first.get("order_received", {}).get(v)
    t_ver = p.first.get("proof_verified", {}).get(v)
    t_vstart = p.verify_start.get(v)
    if t_recv is None or t_ver is None or t_vstart is None:
        return None
    t_vstart = max(t_recv, min(t_vstart, t_ver))  # a batch call may have started before this order came
    x = max(applied, key=lambda n: (applied[n], n))
    t_cert = t_formed if x == former else p.first.get("certificate_received", {}).get(x)
    if t_cert is None:
        t_cert = p.first.get("certificate_formed", {}).get(x)
    if t_cert is None:
        return None
    marks = (anchor, t_recv, t_vstart, t_ver, voted[v], t_formed, t_cert, applied[x])
    return tuple(_ms(b - a) for a, b in zip(marks, marks[1:], strict=False))


def _ms(delta_ns: float) -> float:
    return delta_ns / _NS_PER_MS


def _stage_samples(
    p: _Tx,
    anchor: int,
    ranks: Mapping[str, int],
    out: dict[str, list[float]],
    node_received: dict[str, list[float]],
    node_verified: dict[str, list[float]],
    node_applied: dict[str, list[float]],
) -> None:
    for n, ts in p.first.get("order_received", {}).items():
        out["received"].append(_ms(ts - anchor))
        node_received[n].append(_ms(ts - anchor))
    for n, ts in p.first.get("proof_verified", {}).items():
        out["verified"].append(_ms(ts - anchor))
        node_verified[n].append(_ms(ts - anchor))
    for event, stage in (("vote_sent", "first_vote"), ("certificate_formed", "certificate")):
        got = p.earliest(event)
        if got is not None:
            out[stage].append(_ms(got[0] - anchor))
    applied = p.first.get("certificate_applied", {})
    for n, ts in applied.items():
        node_applied[n].append(_ms(ts - anchor))
    times = sorted(applied.values())
    for stage, rank in ranks.items():
        if 1 <= rank <= len(times):
            out[stage].append(_ms(times[rank - 1] - anchor))


def _causal_pairs(p: _Tx, node_by_id: Mapping[str, str], out: dict[tuple[str, str], list[int]]) -> None:
    """Record ``effect - cause`` for every causal pair whose two events were logged on different nodes."""
    submitted = p.earliest("order_submitted")
    if submitted is not None:
        ts0, origin = submitted
        for n, ts in p.first.get("order_received", {}).items():
            if n != origin:
                out[(n, origin)].append(ts - ts0)
    sent = p.first.get("vote_sent", {})
    for (n, validator), ts in p.votes_in.items():
        v_node = node_by_id.get(validator)
        if v_node is not None and v_node != n and v_node in sent:
            out[(n, v_node)].append(ts - sent[v_node])
    formed = p.earliest("certificate_formed")
    if formed is not None:
        ts0, former = formed
        for n, ts in p.first.get("certificate_received", {}).items():
            if n != former:
                out[(n, former)].append(ts - ts0)


def _skew_findings(pairs: Mapping[tuple[str, str], list[int]]) -> tuple[SkewFinding, ...]:
    found = []
    for (node, ref), deltas in sorted(pairs.items()):
        bad = sum(1 for d in deltas if d < -SKEW_TOLERANCE_NS)
        if not bad:
            continue
        ordered = sorted(deltas)
        found.append(
            SkewFinding(
                node=node,
                reference=ref,
                pairs=len(deltas),
                violations=bad,
                worst_ms=round3(_ms(ordered[0])),
                median_ms=round3(_ms(percentile(ordered, 50))),
            )
        )
    return tuple(found)


def _unsettled(tx: str, p: _Tx, nodes: Sequence[str]) -> Unsettled:
    last = "none"
    for event in _PROGRESS:
        if p.first.get(event):
            last = event
    applied = p.first.get("certificate_applied", {})
    rejections = Counter(p.rejections)
    if p.proof_failed:
        rejections["proof invalid"] += len(p.proof_failed)
    return Unsettled(
        tx=tx,
        last_stage=last,
        applied_nodes=len(applied),
        nodes=len(nodes),
        missing=tuple(n for n in nodes if n not in applied),
        rejections=dict(rejections),
    )


# == the command ===========================================================================================
@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyRun:
    """One ``p2pnode latency`` run (built from the command line by :mod:`p2pnode.cli.latency`)."""

    logs: tuple[Path, ...] = ()
    json: bool = False
    plot: Path | None = None  # also draw the latency figure to this PNG
    trace: Path | None = None  # also write a Chrome trace-event JSON file
    trace_html: Path | None = None  # also write a self-contained HTML timeline of that trace
    run: str | None = None  # only the payments of this bench run (its run_marker lines)
    since_ns: int | None = None  # only payments submitted at or after this time
    until_ns: int | None = None  # only payments submitted at or before this time
    compare: tuple[Path, Path] | None = None  # compare two --json documents instead of reading logs


def _read_lines(path: Path) -> Iterator[str]:
    # errors="replace": a binary or half-written line becomes a malformed line, not a crash.
    with path.open(encoding="utf-8", errors="replace") as f:
        yield from f


def _sources(paths: Sequence[Path]) -> dict[str, Iterator[str]]:
    return {str(p): _read_lines(p) for p in paths}


def _selection(args: LatencyRun, paths: Sequence[Path]) -> tuple[set[str] | None, str | None, list[str]]:
    """The payments ``--run``/``--since``/``--until`` select (None: all), how, and notes for the report."""
    from p2pnode.tools.latency_select import scan, select, window_text

    found = scan(_sources(paths))
    notes: list[str] = []
    if args.run is None and args.since_ns is None and args.until_ns is None:
        if len(found.runs) > 1:
            ids = ", ".join(w.run for w in found.runs)
            notes.append(f"these logs hold {len(found.runs)} bench runs ({ids}): pick one with --run ID")
        return None, None, notes
    lo, hi = args.since_ns, args.until_ns
    if args.run is not None:
        r_lo, r_hi = found.window(args.run)
        lo = r_lo if lo is None else max(lo, r_lo)
        hi = r_hi if hi is None else (hi if r_hi is None else min(hi, r_hi))
    txs = select(found, lo, hi)
    return txs, window_text(args.run, lo, hi, len(txs)), notes


def run_latency(args: LatencyRun) -> int:
    """Analyze the given logs and print the report; 0 on success, 2 if no log could be read, the run
    was not found, or the plot could not be made."""
    from p2pnode.errors import LocalError
    from p2pnode.tools.latency_trace import build_trace, write_trace, write_trace_html

    if args.compare is not None:
        from p2pnode.tools.latency_compare import compare_text, load_report

        try:
            (a_name, a), (b_name, b) = (load_report(p) for p in args.compare)
        except LocalError as exc:
            print(f"p2pnode latency: {exc}", file=sys.stderr)
            return 2
        print(compare_text(a_name, a, b_name, b))
        return 0
    paths: list[Path] = []
    for p in args.logs:
        if p.is_file():
            paths.append(p)
        else:
            print(f"p2pnode latency: {p}: not a readable file, skipped", file=sys.stderr)
    if not paths:
        print("p2pnode latency: no log files to read", file=sys.stderr)
        return 2
    try:
        txs, how, notes = _selection(args, paths)
        col = collect(_sources(paths), txs=txs)
        report = summarize(col, selection=how, notes=notes)
    except (OSError, LocalError) as exc:
        print(f"p2pnode latency: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(render_report(report))
    if args.trace is not None or args.trace_html is not None:
        trace = build_trace(col)
        try:
            if args.trace is not None:
                write_trace(trace, args.trace)
                print(f"wrote {args.trace}", file=sys.stderr)
            if args.trace_html is not None:
                write_trace_html(trace, args.trace_html, window_ms=_TRACE_HTML_MS)
                print(f"wrote {args.trace_html}", file=sys.stderr)
        except OSError as exc:
            print(f"p2pnode latency: {exc}", file=sys.stderr)
            return 2
    if args.plot is not None:
        try:
            write_plot(report, args.plot)
        except ImportError:
            print("p2pnode latency: --plot needs matplotlib: pip install 'p2pnode[plot]'", file=sys.stderr)
            return 2
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


_TRACE_HTML_MS = 250.0  # the HTML timeline shows a quarter second from mid-run: a few dozen payments legibly
