"""The ``p2pnode latency --plot`` figure, drawn with matplotlib (an optional dependency)."""

from __future__ import annotations

from pathlib import Path

from p2pnode.tools.latency_report import STAGE_LABELS, Report

__all__ = ["write_plot"]


def _stage_breakdown(report: Report) -> list[tuple[str, float]]:
    """Median stage segments (ms) for the stacked bar: differences of successive stage p50s.

    Per-node stages (received, verified) are pooled over nodes, while the first vote is the earliest of any
    validator, so a stage can end before the previous one's median: such a segment is left out rather than
    drawn with zero or negative width. The segments always add up to the last stage's p50.
    """
    chain = [
        ("submit → received", "received"),
        ("→ verified", "verified"),
        ("→ first vote", "first_vote"),
        ("→ certificate", "certificate"),
        ("→ applied (median node)", "applied_median"),
    ]
    out: list[tuple[str, float]] = []
    prev = 0.0
    for label, stage in chain:
        v = report.stages[stage].p50
        if v is None:
            continue
        if v > prev:
            out.append((label, v - prev))
            prev = v
    return out


def write_plot(report: Report, path: Path) -> None:
    """Write a PNG: (a) CDF of applied-at-first/median/last-node latency, (b) median stage breakdown.

    Raises ``ImportError`` if matplotlib is missing (``pip install 'p2pnode[plot]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cdf, ax_bar) = plt.subplots(
        2, 1, figsize=(10, 8), gridspec_kw={"height_ratios": [3, 1.3]}, layout="constrained"
    )
    fig.suptitle(
        f"p2pnode settlement latency: {report.payments} payments, {len(report.nodes)} nodes, "
        f"{report.settled} applied everywhere"
    )
    plotted = False
    for stage, color in (
        ("applied_first", "tab:green"),
        ("applied_median", "tab:blue"),
        ("applied_last", "tab:red"),
    ):
        xs = report.samples.get(stage, ())
        if not xs:
            continue
        # Start the step at (first sample, 0) so each curve visibly rises from zero.
        xs = (xs[0], *xs)
        ys = [0.0] + [(i + 1) / (len(xs) - 1) for i in range(len(xs) - 1)]
        p50 = report.stages[stage].p50
        ax_cdf.step(xs, ys, where="post", color=color, label=f"{STAGE_LABELS[stage]} (p50 {p50:.2f} ms)")
        plotted = True
    ax_cdf.set_title("(a) time from submit until applied, cumulative distribution")
    ax_cdf.set_xlabel("latency after submit (ms)")
    ax_cdf.set_ylabel("fraction of payments")
    ax_cdf.set_ylim(0, 1.02)
    ax_cdf.grid(True, alpha=0.3)
    if plotted:
        ax_cdf.legend(loc="lower right")
    else:
        ax_cdf.text(0.5, 0.5, "no applied payments in these logs", ha="center", transform=ax_cdf.transAxes)

    segments = _stage_breakdown(report)
    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]
    left = 0.0
    total = sum(w for _, w in segments) or 1.0
    for (label, width), color in zip(segments, colors, strict=False):
        ax_bar.barh([0], [width], left=left, color=color, edgecolor="white", label=f"{label}: {width:.2f} ms")
        if width / total > 0.08:
            ax_bar.text(left + width / 2, 0, f"{width:.2f}", ha="center", va="center", color="white")
        left += width
    ax_bar.set_title("(b) median stage breakdown (p50 of each stage)")
    ax_bar.set_xlabel("time after submit (ms)")
    ax_bar.set_yticks([])
    ax_bar.set_xlim(0, max(left, 1e-3) * 1.02)
    if segments:
        ax_bar.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=3, fontsize="small", frameon=False
        )
    fig.savefig(path, dpi=110)
    plt.close(fig)
