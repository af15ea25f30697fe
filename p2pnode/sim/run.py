"""``p2pnode sim``: run a simulation, write its logs and summary, render the summary for a reader."""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pnode.net.linkmodel import NetworkProfile, load_profile
from p2pnode.sim.costs import CostTable, default_costs, load_costs
from p2pnode.sim.engine import SimSpec, Simulation


@dataclass(frozen=True, kw_only=True)
class SimRun:
    spec: SimSpec
    network: Path | NetworkProfile
    out: Path | None = None
    costs: Path | CostTable | None = None
    json: bool = False


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate(run: SimRun, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``run`` and return its summary (also written to ``OUT/summary.json``, logs to ``OUT/logs``)."""
    profile = run.network if isinstance(run.network, NetworkProfile) else load_profile(run.network)
    if run.costs is None:
        costs = default_costs()
    elif isinstance(run.costs, CostTable):
        costs = run.costs
    else:
        costs = load_costs(run.costs)
    log_dir = run.out / "logs" if run.out is not None else None
    sim = Simulation(run.spec, profile, costs, progress=progress, log_dir=log_dir)
    summary = sim.run().summary()
    summary["costs"] = costs.machine
    summary["peak_rss_mib"] = round(peak_rss_mib(), 1)
    if run.out is not None:
        (run.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def render_summary(s: Mapping[str, Any]) -> str:
    net = s["network"]
    lines = [
        f"{s['nodes']} nodes ({s['validators']} validators, full nodes dial {s['full_degree']}), "
        f"{s['connections']} connections, network {net['name']} (median RTT {net['median_rtt_ms']:g} ms), "
        f"seed {s['seed']}, cores {'one per node' if s['cores'] is None else s['cores']}",
        f"{s['settled']}/{s['payments']} payments settled"
        + (f", {s['refused']} refused" if s["refused"] else "")
        + f"; applied on every node: {s['applied_everywhere']}"
        + f"; roots equal: {'yes' if s['roots_equal'] else 'NO'}"
        + (f"; {s['settled_per_s']:g} settled/s" if s.get("settled_per_s") else ""),
        "",
        f"{'settlement latency':<28}{'n':>6}{'p50 ms':>11}{'p99 ms':>11}{'p50 RTT':>9}{'p99 RTT':>9}",
    ]
    names = {
        "client": "client (its node settled)",
        "applied_first": "applied, first node",
        "applied_median": "applied, median node",
        "applied_last": "applied, last node",
    }
    for key, label in names.items():
        st = s["latency"][key]
        if not st.get("n"):
            lines.append(f"{label:<28}{0:>6}")
            continue
        lines.append(
            f"{label:<28}{st['n']:>6}{st['p50_ms']:>11.1f}{st['p99_ms']:>11.1f}"
            f"{st['p50_rtt']:>9.2f}{st['p99_rtt']:>9.2f}"
        )
    lines += [
        "",
        f"{'per node per payment':<14}{'nodes':>6}{'msgs in':>9}{'KB in':>8}{'msgs out':>9}{'KB out':>8}"
        f"{'dups':>6}{'peak queue':>12}{'busy':>7}",
    ]
    for role, r in s["roles"].items():
        lines.append(
            f"{role:<14}{r['nodes']:>6}{r['msgs_in_per_payment']:>9.2f}{r['kb_in_per_payment']:>8.2f}"
            f"{r['msgs_out_per_payment']:>9.2f}{r['kb_out_per_payment']:>8.2f}{r['duplicates_per_payment']:>6.2f}"
            f"{r['peak_queue_max']:>7} max{r['busy_share_median'] * 100:>6.1f}%"
        )
    lines += [
        "",
        f"virtual time {s['virtual_s']:g} s, wall time {s['wall_s']:g} s, "
        f"peak memory {s['peak_rss_mib']:g} MiB; "
        f"distinct checks: {s['distinct_checks']['proofs']} proofs, {s['distinct_checks']['signatures']} "
        f"signatures; costs: {s['costs']}",
        "(medians over the nodes of each role; latencies from each payment's scheduled send; RTT = the "
        "profile's median inter-region round trip)",
    ]
    return "\n".join(lines)


def stderr_progress(line: str) -> None:
    print(f"sim: {line}", file=sys.stderr, flush=True)


__all__ = ["SimRun", "peak_rss_mib", "render_summary", "simulate", "stderr_progress"]
