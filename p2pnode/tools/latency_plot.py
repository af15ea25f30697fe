"""The ``p2pnode latency --plot`` figure, drawn with matplotlib (an optional dependency).

Three rows, each answering one question:

(a) **How fast does a payment reach the first, the median and the last node?** One CDF panel per
    per-node stage (order received, proof verified, applied), with the first, median and last node as
    three curves of different colour *and* line style, on a log time axis so that curves a fraction of
    a millisecond apart do not hide under each other.
(b) **Where does the time go, and is it queueing or work?** The critical path of each payment
    (:func:`p2pnode.tools.latency.critical_path`): p50, p90 and p99 of every segment, coloured by kind:
    waiting (for the verifier, for the quorum's votes), work (the verification call, locking and
    signing the vote, applying), delivery between nodes.
(c) **What did the slowest 1 % wait on?** The mean of every segment over the slowest 1 % of payments
    (by time until the last node applied), next to the same for a typical payment (p40–p60) and for
    all: stacked, so each bar is that group's mean time to settle everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2pnode.tools.latency_report import SEGMENT_KIND, SEGMENT_LABELS, SEGMENTS, Report

__all__ = ["tail_groups", "write_plot"]

_KIND_COLOR = {
    "wait": "#e8862a",
    "work": "#2b6cb0",
    "commit": "#805ad5",
    "delivery": "#8a8a8a",
    "mixed": "#2c7a7b",
}
# One colour per segment for the stacked bars: waits orange, work blue, commit purple, delivery grey.
_SEG_COLOR = {
    "gossip": "#b0b0b0",
    "verify_queue": "#f0a030",
    "verify": "#2b6cb0",
    "vote": "#805ad5",
    "quorum": "#f6cf7a",
    "cert_spread": "#707070",
    "apply": "#2c7a7b",
}
_RANK_STYLE = (("first", "#2f855a", "-"), ("median", "#2b6cb0", "--"), ("last", "#c53030", ":"))


def tail_groups(paths: Sequence[tuple[float, ...]]) -> list[tuple[str, int, tuple[float, ...]]]:
    """(label, payments, mean of each segment) for: all payments, typical (p40-p60 of the total), and
    the slowest 1 % (at least one payment), ranked by the total (time until the last node applied)."""
    if not paths:
        return []
    ranked = sorted(paths, key=sum)
    n = len(ranked)

    def mean(group: Sequence[tuple[float, ...]]) -> tuple[float, ...]:
        return tuple(sum(p[i] for p in group) / len(group) for i in range(len(SEGMENTS)))

    lo, hi = int(n * 0.4), max(int(n * 0.4) + 1, int(math.ceil(n * 0.6)))
    slow = ranked[n - max(1, math.ceil(n / 100)) :]
    return [
        ("all payments", n, mean(ranked)),
        ("typical (p40-p60)", hi - lo, mean(ranked[lo:hi])),
        ("slowest 1 %", len(slow), mean(slow)),
    ]


def _takeaway(report: Report) -> str:
    groups = tail_groups(report.paths)
    if not groups:
        return "no complete critical paths in these logs"
    _, count, seg = groups[-1]
    total = sum(seg) or 1.0
    top = SEGMENTS[max(range(len(SEGMENTS)), key=lambda i: seg[i])]
    share = seg[SEGMENTS.index(top)] / total
    typical = groups[1][2]
    return (
        f"slowest 1 % ({count} payments): {sum(seg):.1f} ms to settle everywhere vs {sum(typical):.1f} ms "
        f"typical; {share:.0%} of it is '{SEGMENT_LABELS[top]}' ({SEGMENT_KIND[top]})"
    )


def _cdf(ax: Any, report: Report, stage: str, title: str) -> None:
    drawn = False
    lows: list[float] = []
    for rank, color, style in _RANK_STYLE:
        key = f"{stage}_{rank}" if stage != "applied" else f"applied_{rank}"
        xs = [max(x, 1e-3) for x in report.samples.get(key, ())]
        if not xs:
            continue
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        p50 = xs[math.ceil(len(xs) / 2) - 1]
        ax.step(
            [xs[0], *xs],
            [0.0, *ys],
            where="post",
            color=color,
            linestyle=style,
            linewidth=1.8,
            label=f"{rank} node: p50 {p50:.2f}, p99 {xs[math.ceil(len(xs) * 0.99) - 1]:.2f} ms",
        )
        lows.append(xs[0])
        drawn = True
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.25)
    ax.set_xlabel("ms after submit (log scale)")
    if drawn:
        ax.set_xscale("log")
        ax.legend(loc="lower right", fontsize=7.5)
    else:
        ax.text(0.5, 0.5, "not in these logs", ha="center", transform=ax.transAxes)


def _segments(ax: Any, report: Report) -> None:
    names = [s for s in SEGMENTS if report.segments.get(s) and report.segments[s].count]
    ax.set_title(
        "(b) where the time goes: each critical-path segment, p50 (dot), p90 and p99 (ticks)", fontsize=10
    )
    if not names:
        ax.text(0.5, 0.5, "no complete critical paths in these logs", ha="center", transform=ax.transAxes)
        return
    for y, name in enumerate(reversed(names)):
        st = report.segments[name]
        color = _KIND_COLOR[SEGMENT_KIND[name]]
        p50, p90, p99 = (max(v or 0.0, 1e-3) for v in (st.p50, st.p90, st.p99))
        ax.plot([p50, p99], [y, y], color=color, linewidth=2, alpha=0.6)
        ax.plot([p50], [y], "o", color=color, markersize=9)
        ax.plot([p90, p99], [y, y], "|", color=color, markersize=14, markeredgewidth=2)
        ax.text(
            p99 * 1.15,
            y,
            f"p50 {st.p50:.2f} · p90 {st.p90:.2f} · p99 {st.p99:.2f} ms",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{SEGMENT_LABELS[n]} [{SEGMENT_KIND[n]}]" for n in reversed(names)], fontsize=8.5)
    ax.set_xscale("log")
    lo = min(max(report.segments[n].p50 or 1e-3, 1e-3) for n in names)
    hi = max(max(report.segments[n].p99 or 1e-3, 1e-3) for n in names)
    ax.set_xlim(lo / 2, hi * 12)
    ax.set_xlabel("ms (log scale)")
    ax.grid(True, axis="x", which="both", alpha=0.25)
    for kind, color in _KIND_COLOR.items():
        ax.plot([], [], "o", color=color, label=kind)
    ax.legend(loc="upper left", fontsize=8, title="kind", title_fontsize=8)


def _tail(ax: Any, report: Report) -> None:
    groups = tail_groups(report.paths)
    ax.set_title(
        "(c) what the slowest 1 % waited on: mean of each segment per group (bar length = mean time to "
        "settle on every node)",
        fontsize=10,
    )
    if not groups:
        ax.text(0.5, 0.5, "no complete critical paths in these logs", ha="center", transform=ax.transAxes)
        return
    widest = max(sum(max(v, 0.0) for v in seg) for _, _, seg in groups) or 1.0
    for y, (_, _, seg) in enumerate(reversed(groups)):
        left = 0.0
        for i, name in enumerate(SEGMENTS):
            w = max(seg[i], 0.0)
            hatch = "//" if SEGMENT_KIND[name] == "wait" else None
            ax.barh(
                [y],
                [w],
                left=left,
                color=_SEG_COLOR[name],
                edgecolor="white",
                hatch=hatch,
                label=SEGMENT_LABELS[name] if y == 0 else None,
            )
            if w / widest > 0.06:
                ax.text(
                    left + w / 2,
                    y,
                    f"{w:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if SEGMENT_KIND[name] != "work" else "white",
                )
            left += w
        ax.text(left + widest * 0.01, y, f"{left:.1f} ms", va="center", fontsize=8.5)
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([f"{label}\n({count} payments)" for label, count, _ in reversed(groups)], fontsize=8.5)
    ax.set_xlim(0, widest * 1.12)
    ax.set_xlabel("ms after submit (linear: segments add up)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4, fontsize=8, frameon=False)


def write_plot(report: Report, path: Path) -> None:
    """Write the three-row PNG described in the module docstring.

    Raises ``ImportError`` if matplotlib is missing (``pip install 'p2pnode[plot]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 12.5), layout="constrained")
    grid = fig.add_gridspec(3, 3, height_ratios=[1.15, 1.1, 1.0])
    axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
    ax_seg = fig.add_subplot(grid[1, :])
    ax_tail = fig.add_subplot(grid[2, :])
    head = report.selection.split(",")[0] if report.selection else "every payment in the logs"
    fig.suptitle(
        f"p2pnode settlement latency: {report.payments} payments, {len(report.nodes)} nodes, "
        f"{report.settled} applied everywhere; {head}\n{_takeaway(report)}",
        fontsize=11,
    )
    _cdf(axes[0], report, "received", "(a) order received (first node: where it was submitted)")
    _cdf(axes[1], report, "verified", "proof verified: first / median / last node")
    _cdf(axes[2], report, "applied", "applied: first / median / last node")
    axes[0].set_ylabel("fraction of payments")
    _segments(ax_seg, report)
    _tail(ax_tail, report)
    fig.savefig(path, dpi=100)
    plt.close(fig)
