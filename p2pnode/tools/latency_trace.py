"""``p2pnode latency --trace FILE.json``: the payments as a Chrome trace-event timeline (Perfetto, chrome://tracing).

Layout (the JSON object format of the Trace Event Format):

* one process per node (``pid`` 1, 2, ... in name order; ``process_name`` metadata names it and its role),
  with one thread per *lane* (``tid``): a node handles many payments at once, and slices on one thread
  must not overlap, so each payment's slices at a node go on the lowest lane free for its whole span;
* one complete event (``ph: "X"``) per stage of each payment at each node, between two of its logged
  events: ``queued for verifier`` (order received → verification call started, i.e. ``proof_verified``
  time minus ``duration_us``), ``verify proof`` (the call), ``lock + sign vote`` (verified → vote sent),
  ``waiting for quorum`` (own vote sent → certificate formed here) or ``waiting for certificate``
  (→ certificate received), ``apply`` (certificate → applied). ``args.tx`` is the transfer digest;
* flow events (``ph: "s"`` then ``ph: "f"`` with ``bp: "e"``, the same ``id``) for every hop the logs
  show: the order from the peer it came from (``order_received.peer``, else the node it was submitted
  to), each vote from its validator to each node that logged receiving it, and the certificate from the
  peer that relayed it (``certificate_received.peer``, else the node that formed it first). A flow's
  start lies inside the slice that ends at the sending event, its end inside the slice that holds the
  receiving event; a hop whose end has no slice (e.g. a vote that came before the node's own order) is
  left out.

Timestamps are whole microseconds after the earliest slice in the trace (``otherData.base_ts_ns``), so
that contiguous slices share their boundary exactly; a stage shorter than a microsecond has no slice.
Flow events sit half a microsecond inside the slice they bind to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pnode.tools.latency import Collected, _Tx

__all__ = ["build_trace", "write_trace", "write_trace_html"]

# (mark before, mark after) -> slice name; marks are the node's logged events in causal order.
_MARKS = ("received", "verify_start", "verified", "vote_sent", "certificate", "applied")
_NAMES = {
    ("received", "verify_start"): "queued for verifier",
    ("verify_start", "verified"): "verify proof",
    ("received", "verified"): "queued + verify",
    ("verified", "vote_sent"): "lock + sign vote",
    ("vote_sent", "certificate"): "waiting for quorum",
    ("certificate", "applied"): "apply",
}


@dataclass(frozen=True, slots=True)
class _Slice:
    name: str
    start: int  # microseconds since the epoch
    end: int
    tid: int = 0


def _node_marks(p: _Tx, node: str) -> dict[str, int]:
    got: dict[str, int] = {}
    first = p.first
    recv = first.get("order_received", {}).get(node)
    sub = first.get("order_submitted", {}).get(node)
    if recv is not None or sub is not None:
        got["received"] = min(t for t in (recv, sub) if t is not None)
    if node in p.verify_start:
        got["verify_start"] = p.verify_start[node]
    for event, mark in (("proof_verified", "verified"), ("vote_sent", "vote_sent")):
        if node in first.get(event, {}):
            got[mark] = first[event][node]
    certs = [t for e in ("certificate_formed", "certificate_received") if (t := first.get(e, {}).get(node))]
    if certs:
        got["certificate"] = min(certs)
    if node in first.get("certificate_applied", {}):
        got["applied"] = first["certificate_applied"][node]
    return got


def _slices(p: _Tx, node: str) -> tuple[list[_Slice], dict[str, int]]:
    """The node's slices of one payment (contiguous, in time order) and the marks kept: a mark logged
    before the previous one (clock noise, or a certificate that came before the node's own order) is
    dropped, so the slices never run backwards."""
    marks = {m: t // 1000 for m, t in _node_marks(p, node).items()}  # whole microseconds
    kept: list[tuple[str, int]] = []
    for m in _MARKS:
        t = marks.get(m)
        if t is not None and (not kept or t >= kept[-1][1]):
            kept.append((m, t))
    formed_here = node in p.first.get("certificate_formed", {})
    out: list[_Slice] = []
    for (a, ta), (b, tb) in zip(kept, kept[1:], strict=False):
        if tb == ta:
            continue
        name = _NAMES.get((a, b))
        if name is None:
            name = "waiting for certificate" if b == "certificate" else f"{a} → {b}"
        if name == "waiting for quorum" and not formed_here:
            name = "waiting for certificate"
        out.append(_Slice(name, ta, tb))
    return out, dict(kept)


def _ending_at(slices: list[_Slice], t: int) -> _Slice | None:
    for s in slices:
        if s.end == t:
            return s
    return None


def _holding(slices: list[_Slice], t: int) -> _Slice | None:
    for s in slices:
        if s.start <= t <= s.end:
            return s
    return None


def build_trace(col: Collected) -> dict[str, Any]:
    """The trace-event document of every payment in ``col`` (see the module docstring)."""
    pid_of = {n: i + 1 for i, n in enumerate(col.nodes)}
    lanes: dict[str, list[int]] = {n: [] for n in col.nodes}  # node -> end (us) of each lane's last slice
    per_payment: list[tuple[str, dict[str, list[_Slice]], dict[str, dict[str, int]]]] = []

    def key(item: tuple[str, _Tx]) -> tuple[int, str]:
        a = item[1].anchor()
        return (a if a is not None else 2**63, item[0])

    for tx, p in sorted(col.payments.items(), key=key):
        slices: dict[str, list[_Slice]] = {}
        marks: dict[str, dict[str, int]] = {}
        for node in col.nodes:
            got, kept = _slices(p, node)
            if got:
                slices[node], marks[node] = got, kept
        per_payment.append((tx, slices, marks))

    # Lanes: per node, payments by start time, each on the lowest lane whose last slice ended before.
    laned: dict[int, list[_Slice]] = {}
    spans = sorted(
        (
            (sl[0].start, sl[-1].end, node, sl)
            for _, by_node, _ in per_payment
            for node, sl in by_node.items()
        ),
        key=lambda s: (s[2], s[0], s[1]),
    )
    for start, end, node, sl in spans:
        free = lanes[node]
        for i, last_end in enumerate(free):
            if last_end < start:
                free[i] = end
                lane = i
                break
        else:
            free.append(end)
            lane = len(free) - 1
        laned[id(sl)] = [replace(x, tid=lane + 1) for x in sl]
    per_payment = [
        (tx, {node: laned[id(sl)] for node, sl in by_node.items()}, marks)
        for tx, by_node, marks in per_payment
    ]

    all_ts = [s.start for _, by_node, _ in per_payment for sl in by_node.values() for s in sl]
    base = min(all_ts) if all_ts else 0

    def us(t: float) -> float:
        return t - base

    events: list[dict[str, Any]] = []
    for node, pid in pid_of.items():
        role = col.roles.get(node)
        label = f"{node} ({role})" if role else node
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": label}})
        events.append(
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
        )
        for lane in range(1, len(lanes[node]) + 1):
            events.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": lane, "args": {"name": f"lane {lane}"}}
            )
    body: list[dict[str, Any]] = []
    flow_id = 0

    def flow(
        name: str,
        tx: str,
        src_node: str,
        src: _Slice,
        src_ts: float,
        dst_node: str,
        dst: _Slice,
        dst_ts: float,
    ) -> None:
        nonlocal flow_id
        flow_id += 1
        common = {"name": name, "cat": "payment", "id": flow_id, "args": {"tx": tx}}
        body.append({**common, "ph": "s", "pid": pid_of[src_node], "tid": src.tid, "ts": us(src_ts)})
        body.append(
            {**common, "ph": "f", "bp": "e", "pid": pid_of[dst_node], "tid": dst.tid, "ts": us(dst_ts)}
        )

    # Flow ends half a microsecond inside their slice (exact in binary floating point): never on the
    # boundary two contiguous slices share.
    def inside_end(s: _Slice) -> float:
        return s.end - 0.5

    def inside_start(s: _Slice) -> float:
        return s.start + 0.5

    for tx, by_node, marks in per_payment:
        p = col.payments[tx]
        for node, sl in by_node.items():
            for s in sl:
                args: dict[str, Any] = {"tx": tx}
                body.append(
                    {
                        "ph": "X",
                        "name": s.name,
                        "cat": "payment",
                        "pid": pid_of[node],
                        "tid": s.tid,
                        "ts": us(s.start),
                        "dur": s.end - s.start,
                        "args": args,
                    }
                )
        _flows(col.node_by_id, p, tx, by_node, marks, flow, inside_start, inside_end)

    body.sort(key=lambda e: (e["ts"], 0 if e["ph"] == "X" else 1))
    events += body
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "source": "p2pnode latency --trace",
            "payments": len(per_payment),
            "base_ts_ns": base * 1000,
        },
    }


def _flows(
    node_by_id: Mapping[str, str],
    p: _Tx,
    tx: str,
    by_node: Mapping[str, list[_Slice]],
    marks: Mapping[str, Mapping[str, int]],
    flow: Any,
    inside_start: Any,
    inside_end: Any,
) -> None:
    origin = p.earliest("order_submitted") or p.earliest("order_received")
    # Order hops: from the peer named in order_received (else the origin) to the node's first slice.
    for node, sl in by_node.items():
        t = marks[node].get("received")
        if t is None or origin is None or node == origin[1]:
            continue
        src_node = node_by_id.get(p.peer_of.get(("order_received", node), ""), origin[1])
        src_sl = by_node.get(src_node)
        if not src_sl or sl[0].start != t:
            continue
        first = src_sl[0]
        flow("order", tx, src_node, first, inside_start(first), node, sl[0], inside_start(sl[0]))
    # Votes: from the slice ending at the validator's vote_sent to the receiver's slice holding the time.
    for (node, validator), t_ns in sorted(p.votes_in.items()):
        t = t_ns // 1000
        v_node = node_by_id.get(validator)
        if v_node is None or v_node == node or v_node not in by_node or node not in by_node:
            continue
        t_sent = marks[v_node].get("vote_sent")
        v_src = None if t_sent is None else _ending_at(by_node[v_node], t_sent)
        v_dst = _holding(by_node[node], t)
        if v_src is not None and v_dst is not None:
            at = min(max(t, inside_start(v_dst)), inside_end(v_dst))
            flow("vote", tx, v_node, v_src, inside_end(v_src), node, v_dst, at)
    # Certificates: from the relaying peer (else the first former) to the node's slice that starts at it.
    formed = p.earliest("certificate_formed")
    for node, sl in by_node.items():
        t = marks[node].get("certificate")
        if t is None or node not in p.first.get("certificate_received", {}):
            continue
        if t != p.first["certificate_received"][node] // 1000:
            continue  # it formed its own certificate first
        c_node = node_by_id.get(p.peer_of.get(("certificate_received", node), ""))
        if c_node is None and formed is not None:
            c_node = formed[1]
        if c_node is None or c_node not in by_node:
            continue
        src_t = marks[c_node].get("certificate")
        c_src = None
        if src_t is not None:
            c_src = _ending_at(by_node[c_node], src_t) or _holding(by_node[c_node], src_t)
        c_dst = next((s for s in sl if s.start == t), None) or _holding(sl, t)
        if c_src is not None and c_dst is not None:
            flow("certificate", tx, c_node, c_src, inside_end(c_src), node, c_dst, inside_start(c_dst))


def write_trace(trace: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(trace, separators=(",", ":")) + "\n", encoding="utf-8")


def write_trace_html(trace: Mapping[str, Any], path: Path, *, window_ms: float | None = None) -> None:
    """A self-contained HTML page that draws the same trace (lanes, slices, flow arrows), for machines
    that cannot reach ui.perfetto.dev. ``window_ms`` limits the view to that many milliseconds from the
    middle of the run (the median slice start), past the start-up; None shows everything."""
    page = _HTML.replace("__TRACE__", json.dumps(trace, separators=(",", ":")).replace("</", "<\\/"))
    page = page.replace("__WINDOW_MS__", json.dumps(window_ms))
    path.write_text(page, encoding="utf-8")


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>p2pnode payment trace</title>
<style>
body { font: 12px sans-serif; margin: 8px; background: #fff; }
#legend span { display: inline-block; margin-right: 14px; }
#legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; }
</style></head><body>
<div id="title"></div><div id="legend"></div><canvas id="c"></canvas>
<script>
const trace = __TRACE__;
const windowMs = __WINDOW_MS__;
const colors = {"queued for verifier": "#f2a33a", "verify proof": "#2b6cb0", "queued + verify": "#8fb3d9",
  "lock + sign vote": "#2f855a", "waiting for quorum": "#e9d8a6", "waiting for certificate": "#d9d9d9",
  "apply": "#805ad5"};
const ev = trace.traceEvents;
const procs = {}, threads = {};
for (const e of ev) {
  if (e.ph === "M" && e.name === "process_name") procs[e.pid] = e.args.name;
  if (e.ph === "M" && e.name === "thread_name") (threads[e.pid] = threads[e.pid] || []).push(e.tid);
}
let xs = ev.filter(e => e.ph === "X");
const nX = xs.length, nF = ev.filter(e => e.ph === "f").length;
// The view: windowMs from the middle of the run (steady state, past the start-up), else everything.
const sortedTs = xs.map(e => e.ts).sort((a, b) => a - b);
const t0 = windowMs ? sortedTs[Math.floor(sortedTs.length / 2)] : sortedTs[0];
const t1 = windowMs ? t0 + windowMs * 1000 : Math.max(...xs.map(e => e.ts + e.dur));
xs = xs.filter(e => e.ts + e.dur >= t0 && e.ts <= t1);
const pids = Object.keys(procs).map(Number).sort((a, b) => a - b);
const laneH = 10, gap = 18, left = 150, width = 1500;
const rowY = {}; let y = 24;
const shown = {};
for (const pid of pids) {
  const used = new Set(xs.filter(e => e.pid === pid).map(e => e.tid));
  const lanes = (threads[pid] || []).filter(t => used.has(t)).sort((a, b) => a - b);
  shown[pid] = [y, lanes.length];
  lanes.forEach((t, i) => { rowY[pid + ":" + t] = y + i * laneH; });
  y += Math.max(1, lanes.length) * laneH + gap;
}
const c = document.getElementById("c");
c.width = left + width + 20; c.height = y + 30;
const g = c.getContext("2d");
const X = ts => left + (Math.max(ts, t0) - t0) / (t1 - t0) * width;
g.fillStyle = "#222"; g.font = "12px sans-serif";
for (const pid of pids) {
  const [top, n] = shown[pid];
  g.fillText(procs[pid], 4, top + Math.max(1, n) * laneH / 2 + 4);
  g.strokeStyle = "#ccc"; g.beginPath(); g.moveTo(left, top - 4); g.lineTo(left + width, top - 4); g.stroke();
}
for (const e of xs) {
  const yy = rowY[e.pid + ":" + e.tid]; if (yy === undefined) continue;
  g.fillStyle = colors[e.name] || "#999";
  g.fillRect(X(e.ts), yy, Math.max(1, X(e.ts + e.dur) - X(e.ts)), laneH - 1);
}
const starts = {};
for (const e of ev) if (e.ph === "s") starts[e.id] = e;
const flowColor = {"order": "rgba(200,60,30,0.55)", "vote": "rgba(40,120,60,0.45)",
  "certificate": "rgba(90,50,170,0.6)"};
for (const e of ev) {
  if (e.ph !== "f" || !starts[e.id]) continue;
  const s = starts[e.id]; if (s.ts > t1 || e.ts < t0) continue;
  const y0 = rowY[s.pid + ":" + s.tid], y1 = rowY[e.pid + ":" + e.tid];
  if (y0 === undefined || y1 === undefined) continue;
  g.strokeStyle = flowColor[e.name] || "rgba(0,0,0,0.4)"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(X(s.ts), y0 + laneH / 2); g.lineTo(X(e.ts), y1 + laneH / 2); g.stroke();
}
g.fillStyle = "#222";
const span = (t1 - t0) / 1000, step = Math.pow(10, Math.floor(Math.log10(span / 5)));
for (let ms = 0; ms <= span; ms += step) {
  const x = X(t0 + ms * 1000);
  g.fillRect(x, y - 8, 1, 5); g.fillText(ms.toFixed(step < 1 ? 1 : 0) + " ms", x - 10, y + 8);
}
document.getElementById("title").textContent =
  `p2pnode payment trace: ${trace.otherData.payments} payments, ` +
  `${pids.length} nodes, ${nX} slices and ${nF} flows in the trace; ` +
  `showing ${span.toFixed(1)} ms from the middle of the run ` +
  `(lines: order, vote and certificate hops)`;
document.getElementById("legend").innerHTML = Object.entries(colors).map(([k, v]) =>
  `<span><i style="background:${v}"></i>${k}</span>`).join("") + Object.entries(flowColor).map(([k, v]) =>
  `<span><i style="background:${v}"></i>${k} hop</span>`).join("");
</script></body></html>
"""
