"""The report of a scenario run: collect what the nodes say, check the invariants, render and write it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import trio

from p2pnode.client import Client, SlotBlocked
from p2pnode.scenario import invariants as inv
from p2pnode.scenario.state import NET_ERRORS, Run
from p2pnode.wire.messages import AccountReply, GetAccount
from p2pnode.wire.types import Address

__all__ = ["REPORT_JSON", "REPORT_TEXT", "collect", "exit_code", "render_report", "write_report"]

REPORT_JSON = "report.json"
REPORT_TEXT = "report.txt"


# -- collection -------------------------------------------------------------------------------------------
async def _settled_at(run: Run, name: str, digests: list[str]) -> set[str] | None:
    host, port = run.addr(name)
    out: set[str] = set()
    try:
        with trio.fail_after(30 + len(digests) * 0.05):
            async with await Client.connect(host, port) as client:
                for tx in digests:
                    try:
                        if await client.settled(bytes.fromhex(tx)) is not None:
                            out.add(tx)
                    except SlotBlocked:
                        pass  # can never settle: not settled here
    except NET_ERRORS:
        return None
    return out


async def _balances_at(run: Run, name: str) -> dict[str, int] | None:
    host, port = run.addr(name)
    out: dict[str, int] = {}
    try:
        with trio.fail_after(30):
            async with await Client.connect(host, port) as client:
                for acct in run.accounts:
                    reply = await client.call(GetAccount(address=Address(acct.address)))
                    assert isinstance(reply, AccountReply)
                    out[acct.address.hex()] = reply.balance
    except NET_ERRORS:
        return None
    return out


def _read_events(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return inv.parse_log_lines(fh)
    except FileNotFoundError:
        return []


async def collect(
    run: Run,
    honest_up: list[str],
    statuses: dict[str, dict[str, Any] | None],
    converged: bool,
    quiesce_s: float,
    finals: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Everything the report needs from the nodes, and the checks. ``finals``: the outcome of each
    payer's final payment (``expect.payers_can_pay``)."""
    sc = run.scenario
    cluster = run.cluster
    acked = [p.tx for p in run.payments if p.outcome == "settled"]
    settled = {n: await _settled_at(run, n, acked) for n in honest_up}
    balances = {n: await _balances_at(run, n) for n in honest_up}
    running = await trio.to_thread.run_sync(cluster.running)
    events = {n: _read_events(cluster.cluster.node(n).log) for n in cluster.names if run.honest(n)}
    checks = [
        inv.unique_certificates(events, run.keys),
        inv.same_root({n: (s.get("root") if s else None) for n, s in statuses.items()}),
        inv.acknowledged_applied(acked, {n: (s if s is not None else set()) for n, s in settled.items()}),
        inv.supply_conserved(balances, sc.cluster.accounts * sc.cluster.balance),
        inv.no_crash(
            {n: run.state[n] in ("up", "paused") for n in cluster.names if run.honest(n)},
            {n: n in running for n in cluster.names},
        ),
        inv.memory_bounded(
            {k: v for k, v in run.rss.items() if run.honest(k.split("#")[0])}, sc.expect.max_rss_growth_mb
        ),
    ]
    if sc.expect.accepted_settle:
        accepted = [p.tx for p in run.payments if p.accepted and p.kind == "load"]
        acc_settled = {n: await _settled_at(run, n, accepted) for n in honest_up}
        checks.append(
            inv.acknowledged_applied(
                accepted,
                {n: (s if s is not None else set()) for n, s in acc_settled.items()},
                name="accepted_settle",
            )
        )
    if finals is not None:
        checks.append(inv.payers_can_pay(finals))
    if sc.expect.max_byzantine_connections:
        offenders = {n: run.node_ids[n].hex()[:16] for n in sc.roles}
        checks.append(inv.bounded_reconnects(events, offenders, sc.expect.max_byzantine_connections))
    if sc.expect.no_certificates_during_partition:
        end_ns = time.time_ns()
        windows = [(s, e or end_ns) for s, e in run.windows]
        checks.append(inv.no_certificates_during(events, windows, int(sc.expect.partition_grace_s * 1e9)))
    load_payments = [p for p in run.payments if p.kind == "load"]
    n_settled = sum(1 for p in load_payments if p.outcome == "settled")
    if sc.expect.min_settled:
        checks.append(inv.min_settled(n_settled, sc.expect.min_settled))
    outcomes: dict[str, int] = {}
    for p in load_payments:
        outcomes[p.outcome] = outcomes.get(p.outcome, 0) + 1
    lat = sorted(p.seconds for p in load_payments if p.outcome == "settled")
    errors: dict[str, int] = {}
    for p in run.payments:
        if p.error:
            errors[p.error[:120]] = errors.get(p.error[:120], 0) + 1
    violations = [c.name for c in checks if not c.ok]
    peaks = {k: max(v) for k, v in run.rss.items() if v}
    return {
        "scenario": sc.name,
        "description": sc.description,
        "source": str(sc.source) if sc.source else None,
        "directory": str(cluster.directory),
        "cluster": {
            "validators": sc.cluster.validators,
            "full_nodes": sc.cluster.full_nodes,
            "accounts": sc.cluster.accounts,
        },
        "injected": {"roles": dict(sc.roles), "steps": [s.describe() for s in sc.steps]},
        "timeline": run.timeline,
        "load": {
            "rate": sc.load.rate,
            "duration_s": sc.load.duration_s,
            "attempted": len(load_payments),
            "settled": n_settled,
            "outcomes": outcomes,
            "skipped_busy": run.skipped,
            "latency_p50_s": lat[len(lat) // 2] if lat else None,
            "latency_max_s": lat[-1] if lat else None,
        },
        "equivocations": [
            {"tx": p.tx, "seq": p.seq, "node": p.node, "outcome": p.outcome, "error": p.error}
            for p in run.payments
            if p.kind == "equivocation"
        ],
        "payments": [
            {
                "tx": p.tx,
                "account": p.account,
                "seq": p.seq,
                "node": p.node,
                "kind": p.kind,
                "submitted_s": p.submitted_s,
                "outcome": p.outcome,
                "accepted": p.accepted,
                "seconds": p.seconds,
            }
            for p in run.payments
        ],
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:10]),
        "final_payments": {a: {"outcome": o, "detail": d} for a, (o, d) in (finals or {}).items()},
        "quiescence": {"converged": converged, "seconds": round(quiesce_s, 2), "nodes": honest_up},
        "nodes": {
            n: {
                "role": sc.roles.get(n, "honest"),
                "state": run.state[n],
                "applied": (statuses.get(n) or {}).get("applied"),
                "root": (statuses.get(n) or {}).get("root"),
                "counters": (statuses.get(n) or {}).get("counters"),
                "peak_rss_kb": max([peaks.get(k, 0) for k in peaks if k.split("#")[0] == n] or [0]),
            }
            for n in cluster.names
        },
        "checks": [c.to_json() for c in checks],
        "violations": violations,
        "expect_violation": sc.expect.violation,
        "warnings": run.warnings,
        "passed": not violations,
    }


# -- report -----------------------------------------------------------------------------------------------
def render_report(report: dict[str, Any]) -> str:
    lines = [f"scenario {report.get('scenario')}: {report.get('description', '')}".rstrip(": ")]
    inj = report.get("injected", {})
    if inj.get("roles"):
        lines.append("roles: " + ", ".join(f"{n}={r}" for n, r in inj["roles"].items()))
    for t in report.get("timeline", []):
        trigger = f"  [{t['trigger']}]" if t.get("trigger") else ""
        lines.append(f"  t={t['started_s']:6.1f}s  {t['action']}{trigger}")
    load = report.get("load", {})
    if load:
        lines.append(
            f"load: {load['attempted']} attempted, {load['settled']} settled, outcomes {load['outcomes']}, "
            f"{load['skipped_busy']} slots skipped (accounts busy), p50 {load['latency_p50_s']}s"
        )
    for account, f in report.get("final_payments", {}).items():
        if f["outcome"] != "settled":
            lines.append(f"  final payment of {account}: {f['outcome']} {f['detail']}".rstrip())
    for e in report.get("equivocations", []):
        lines.append(f"  equivocation seq {e['seq']} at {e['node']}: {e['outcome']} {e['error']}".rstrip())
    q = report.get("quiescence", {})
    if q:
        lines.append(f"quiescence: {'converged' if q['converged'] else 'NOT converged'} in {q['seconds']}s")
    nodes = report.get("nodes", {})
    if nodes:
        lines.append(f"{'node':8} {'role':16} {'state':7} {'applied':>8} {'root':16} {'peak RSS':>9}")
        for n, d in nodes.items():
            lines.append(
                f"{n:8} {d['role']:16} {d['state']:7} {str(d['applied']):>8} {str(d['root'])[:16]:16} "
                f"{d['peak_rss_kb'] / 1024:7.0f}Mi"
            )
    lines.append(f"{'check':34} result")
    for c in report.get("checks", []):
        lines.append(f"{c['name']:34} {'ok  ' if c['ok'] else 'FAIL'} {c['detail']}")
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    if report.get("violations"):
        caught = " (expected: the runner caught it)" if report.get("expect_violation") else ""
        lines.append(f"VIOLATION: {', '.join(report['violations'])}{caught}")
    elif report.get("expect_violation"):
        lines.append("VIOLATION EXPECTED BUT NOT FOUND")
    else:
        lines.append("PASSED")
    lines.append(f"wall time {report.get('wall_s')}s")
    return "\n".join(lines)


def write_report(directory: Path, report: dict[str, Any]) -> None:
    (directory / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (directory / REPORT_TEXT).write_text(render_report(report) + "\n", encoding="utf-8")


def exit_code(report: dict[str, Any]) -> int:
    """0 when every invariant held; 1 on any violation (also the expected one) or a missed expected one."""
    if report.get("violations") or report.get("expect_violation"):
        return 1
    return 0
