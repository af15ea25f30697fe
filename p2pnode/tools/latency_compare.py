"""``p2pnode latency --compare A.json B.json``: two runs' stage tables side by side, with deltas.

Either file may be a ``p2pnode latency --json`` document or a ``p2pnode bench --json`` document (its
``log_latency`` part is used, and its ``run_id`` names it).

**Spread.** A run's own spread of a percentile is its distribution-free 95 % interval, from the order
statistics of that run's samples (:func:`p2pnode.tools.stats.percentile_ci`, stored under ``ci95`` in the
document). A difference is *inside the spread* when the two runs' intervals overlap: the runs do not
show that the percentile moved. Such a delta is marked ``~``. Documents without ``ci95`` (written before
it existed) get no mark, and the note says so. ``max`` has no interval: one payment decides it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pnode.errors import LocalError
from p2pnode.tools.latency_report import SEGMENT_LABELS, SEGMENTS, STAGE_LABELS, STAGES, Report

__all__ = ["compare_text", "load_report", "overlaps"]

_STATS = ("p50", "p90", "p99")


def load_report(path: Path) -> tuple[str, Report]:
    """A latency report and a name for it (the bench run id, else the file name)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LocalError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise LocalError(f"{path}: not a JSON object")
    name = path.name
    if "log_latency" in doc:  # a bench document
        if isinstance(doc.get("run_id"), str):
            name = f"{doc['run_id']} ({path.name})"
        doc = doc["log_latency"]
        if doc is None:
            raise LocalError(f"{path}: this bench document has no log latency (its node logs were not found)")
    try:
        return name, Report.from_json(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise LocalError(f"{path}: not a latency report: {exc}") from None


def overlaps(a: list[float] | None, b: list[float] | None) -> bool | None:
    """Whether two intervals overlap; None if either is unknown."""
    if not a or not b:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def _cell(v: float | None) -> str:
    return f"{'-':>9}" if v is None else f"{v:>9.3f}"


def _delta(a: float | None, b: float | None, inside: bool | None) -> str:
    if a is None or b is None:
        return f"{'-':>11}"
    d = b - a
    rel = f"{d / a * 100:+.0f}%" if a > 0 else ""
    mark = "~" if inside else " "
    return f"{d:>+9.3f}{mark}" + f"{rel:>6}"


def _rows(
    names: tuple[str, ...],
    labels: Mapping[str, str],
    get_a: Mapping[str, Any],
    get_b: Mapping[str, Any],
    ci_a: Mapping[str, Mapping[str, list[float] | None]],
    ci_b: Mapping[str, Mapping[str, list[float] | None]],
) -> tuple[list[str], int, int]:
    out: list[str] = []
    marked = compared = 0
    for name in names:
        sa, sb = get_a.get(name), get_b.get(name)
        if sa is None or sb is None or (sa.count == 0 and sb.count == 0):
            continue
        cells = f"{labels[name]:<28}{sa.count:>6}{sb.count:>6}"
        for stat in _STATS:
            va, vb = getattr(sa, stat), getattr(sb, stat)
            inside = overlaps(ci_a.get(name, {}).get(stat), ci_b.get(name, {}).get(stat))
            if va is not None and vb is not None:
                compared += 1
                marked += bool(inside)
            cells += f"{_cell(va)}{_cell(vb)}{_delta(va, vb, inside)}"
        out.append(cells)
    return out, marked, compared


def compare_text(a_name: str, a: Report, b_name: str, b: Report) -> str:
    """The side-by-side table (A, B, B - A) of p50, p90, p99 for every stage and critical-path segment."""
    head1 = f"{'':<40}" + "".join(f"{stat:^29}" for stat in _STATS)
    head2 = f"{'ms after submit':<28}{'n A':>6}{'n B':>6}" + f"{'A':>9}{'B':>9}{'B - A':>11}" * len(_STATS)
    out = [f"A: {a_name}", f"B: {b_name}", "", head1, head2, "-" * len(head2)]
    rows, marked, compared = _rows(STAGES, STAGE_LABELS, a.stages, b.stages, a.ci95, b.ci95)
    out += rows
    if a.segments and b.segments:
        out += ["", f"{'critical path segments':<40}", "-" * len(head2)]
        seg_rows, m2, c2 = _rows(SEGMENTS, SEGMENT_LABELS, a.segments, b.segments, a.ci95, b.ci95)
        out += seg_rows
        marked, compared = marked + m2, compared + c2
    out.append("")
    if not a.ci95 or not b.ci95:
        out.append("note: a document has no ci95 intervals (an older report): no spread marks")
    else:
        out.append(
            f"~ : inside the runs' own spread ({marked} of {compared} deltas): the two runs' 95 % "
            "order-statistic intervals of that percentile overlap, so the runs do not show a change"
        )
    out.append(
        f"payments: A {a.payments} ({a.settled} settled everywhere), B {b.payments} ({b.settled}); "
        f"nodes: A {len(a.nodes)}, B {len(b.nodes)}"
    )
    if len(a.nodes) != len(b.nodes):
        out.append("warning: the runs have different node counts; the applied ranks are not the same nodes")
    return "\n".join(out)
