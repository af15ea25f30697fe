"""``p2pnode scenario bench``: run scenario files one after another and sum them up in one table.

Each scenario runs in its own temporary directory (removed after a run that went as expected, kept
and named otherwise), one at a time: the cluster of one is stopped before the next starts. A
scenario built to fail (``[expect] violation = true``) counts as passed when its violation was
caught. A file that cannot be read, or a cluster that cannot start, is a failed row with the error.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from p2pnode.errors import P2PNodeError
from p2pnode.scenario.report import exit_code
from p2pnode.scenario.runner import run_scenario
from p2pnode.scenario.spec import load_scenario
from p2pnode.scenario.state import Progress
from p2pnode.zk.paths import ZkPaths

__all__ = ["BenchRow", "bench_row", "default_files", "render_bench", "run_bench"]

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "configs" / "scenarios"


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchRow:
    scenario: str
    file: str
    passed: bool  # the run went as expected (for a scenario built to fail: its violation was caught)
    expect_violation: bool
    settled: int
    attempted: int
    latency_ratio: float | None  # p99 under attack / p99 before it (None: no attack, or unbounded)
    latency_unbounded: bool  # an attack window whose p99 is unbounded (payments that did not settle)
    max_rss_growth_mb: float | None
    attacker_penalized: bool | None  # None: not checked
    wall_s: float
    violations: tuple[str, ...] = ()
    error: str = ""
    directory: str = ""  # kept: the run did not go as expected

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_files() -> list[Path]:
    """Every ``configs/scenarios/*.toml`` of this checkout, sorted."""
    return sorted(SCENARIO_DIR.glob("*.toml"))


def _check(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    for c in report.get("checks", []):
        if c.get("name") == name:
            return dict(c)
    return None


def bench_row(path: Path, report: dict[str, Any], wall_s: float, directory: str = "") -> BenchRow:
    """The table row of one finished run (pure: from its report)."""
    load = report.get("load", {})
    lat = (report.get("attack") or {}).get("latency") or {}
    ratio = lat.get("ratio")
    unbounded = bool(lat) and ratio is None and (lat.get("attack") or {}).get("payments", 0) > 0
    mem = _check(report, "memory_bounded")
    growth_kb = (mem or {}).get("facts", {}).get("growth_kb", {})
    pen = _check(report, "attacker_penalized")
    return BenchRow(
        scenario=str(report.get("scenario", path.stem)),
        file=str(path),
        passed=exit_code(report) == 0 or bool(report.get("expect_violation") and report.get("violations")),
        expect_violation=bool(report.get("expect_violation")),
        settled=int(load.get("settled", 0)),
        attempted=int(load.get("attempted", 0)),
        latency_ratio=ratio,
        latency_unbounded=unbounded,
        max_rss_growth_mb=round(max(growth_kb.values()) / 1024, 1) if growth_kb else None,
        attacker_penalized=None if pen is None else bool(pen["ok"]),
        wall_s=wall_s,
        violations=tuple(report.get("violations", [])),
        directory=directory,
    )


async def run_bench(
    files: Sequence[Path],
    progress: Progress,
    *,
    shielded: bool = True,
    zk: ZkPaths | None = None,
    on_row: Callable[[BenchRow], None] | None = None,
) -> list[BenchRow]:
    """Run ``files`` one after another; one :class:`BenchRow` each (``on_row`` is told as each ends)."""
    rows: list[BenchRow] = []
    for path in files:
        start = time.monotonic()
        directory = ""
        try:
            scenario = load_scenario(path)
            directory = tempfile.mkdtemp(prefix=f"p2pnode-bench-{scenario.name}-")
            report = await run_scenario(scenario, Path(directory), progress, shielded=shielded, zk=zk)
            row = bench_row(path, report, round(time.monotonic() - start, 1), directory)
        except (P2PNodeError, OSError) as exc:
            row = BenchRow(
                scenario=path.stem,
                file=str(path),
                passed=False,
                expect_violation=False,
                settled=0,
                attempted=0,
                latency_ratio=None,
                latency_unbounded=False,
                max_rss_growth_mb=None,
                attacker_penalized=None,
                wall_s=round(time.monotonic() - start, 1),
                error=str(exc) or type(exc).__name__,
                directory=directory,
            )
        if row.passed and directory:
            shutil.rmtree(directory, ignore_errors=True)
            row = BenchRow(**{**asdict(row), "directory": ""})
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def _ratio(r: BenchRow) -> str:
    if r.latency_unbounded:
        return "unbounded"
    return "-" if r.latency_ratio is None else f"x{r.latency_ratio:.2f}"


def render_bench(rows: Sequence[BenchRow]) -> str:
    head = (
        f"{'scenario':36} {'passed':8} {'settled':>11} {'p99 ratio':>10} {'RSS +MB':>8} "
        f"{'penalized':>9} {'wall':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        passed = ("yes" if r.passed else "NO") + (" (v)" if r.expect_violation else "")
        pen = "-" if r.attacker_penalized is None else ("yes" if r.attacker_penalized else "NO")
        rss = "-" if r.max_rss_growth_mb is None else f"{r.max_rss_growth_mb:.0f}"
        lines.append(
            f"{r.scenario[:36]:36} {passed:8} {f'{r.settled}/{r.attempted}':>11} {_ratio(r):>10} "
            f"{rss:>8} {pen:>9} {r.wall_s:6.0f}s"
        )
        if r.error:
            lines.append(f"    error: {r.error[:150]}")
        elif not r.passed:
            lines.append(f"    violations: {', '.join(r.violations) or 'expected violation not found'}")
        if r.directory:
            lines.append(f"    kept: {r.directory}")
    ok = sum(1 for r in rows if r.passed)
    lines.append(f"{ok} of {len(rows)} passed ((v): built to fail, passed when caught)")
    return "\n".join(lines)
