"""The report of a scenario run: collect what the nodes say, check the invariants, render and write it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import trio

from p2pnode.client import Client, SlotBlocked
from p2pnode.scenario import invariants as inv
from p2pnode.scenario.state import NET_ERRORS, Payment, Run
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
    all_events = {n: _read_events(cluster.cluster.node(n).log) for n in cluster.names}
    events = {n: evs for n, evs in all_events.items() if run.honest(n)}
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
    attack, attack_checks = _attack_checks(run, all_events, events, load_payments)
    checks.extend(attack_checks)
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
        "attack": attack,
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


def _kill_times(timeline: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(node, from_s, to_s) of every kill step: from its start to its end."""
    out = []
    for t in timeline:
        action = str(t.get("action", ""))
        if action.startswith("kill ") and "started_s" in t:
            names = action.split()[1].split(",")
            end = float(t.get("done_s", t["started_s"]))
            out += [(n, float(t["started_s"]), end) for n in names]
    return out


def _cut_by_kill(p: Payment, kills: list[tuple[str, float, float]]) -> bool:
    if p.outcome == "settled":
        return False
    end = p.submitted_s + p.seconds
    return any(
        node == p.node and start <= end + 0.5 and stop >= p.submitted_s - 0.5 for node, start, stop in kills
    )


def _attack_checks(
    run: Run,
    all_events: dict[str, list[dict[str, Any]]],
    events: dict[str, list[dict[str, Any]]],
    load_payments: list[Payment],
) -> tuple[dict[str, Any] | None, list[inv.Check]]:
    """The attack section of the report (its start, both latency windows, what each client-port attack
    saw, the attacker's own stats) and the checks ``latency_under_attack`` / ``attacker_penalized``."""
    sc = run.scenario
    start_s = inv.attack_start_s(all_events, run.t0_ns, [r.started_s for r in run.attacks])
    checks: list[inv.Check] = []
    if start_s is None:
        if sc.expect.max_latency_ratio:
            checks.append(inv.latency_under_attack([], None, sc.expect.max_latency_ratio))
        if sc.expect.attacker_penalized:
            checks.append(inv.attacker_penalized(events, (), None))
        return None, checks
    # A payment whose node was killed while it was in flight failed because of the kill (a step of
    # the scenario, in either window), not because of the attack: it is left out of both windows.
    kills = _kill_times(run.timeline)
    kept = [p for p in load_payments if not _cut_by_kill(p, kills)]
    pays = [(p.submitted_s, p.seconds, p.outcome) for p in kept]
    latency = inv.latency_under_attack(pays, start_s, sc.expect.max_latency_ratio)
    latency.facts["cut_by_kills"] = len(load_payments) - len(kept)
    if sc.expect.max_latency_ratio:
        checks.append(latency)
    roles = set(sc.roles)
    ids = {run.node_ids[n].hex()[:16] for n in roles}
    addrs: set[str] = set()
    started_ns: list[int] = []
    stats: dict[str, dict[str, Any]] = {}
    for n in roles:
        for e in all_events.get(n, []):
            if e.get("event") == "byzantine_identity":
                if isinstance(e.get("node_id"), str):
                    ids.add(e["node_id"])
                if isinstance(e.get("addr"), str):
                    addrs.add(e["addr"])
            elif e.get("event") == "byzantine_behaviour_started" and isinstance(e.get("ts_ns"), int):
                started_ns.append(e["ts_ns"])
            elif e.get("event") == "byzantine_stats":
                stats[n] = {k: e[k] for k in ("sent", "bytes_out", "bytes_in") if k in e}
    client_attacks: dict[str, int] = {}
    evidence: dict[str, int] = {}
    for r in run.attacks:
        client_attacks[r.node] = min(client_attacks.get(r.node, r.started_ns), r.started_ns)
        evidence[r.node] = evidence.get(r.node, 0) + r.cut + r.long_waits_answered
    peer_start = min(started_ns) if started_ns else run.t0_ns
    penalized = inv.attacker_penalized(
        events, ids if roles else (), peer_start, client_attacks, addrs, client_evidence=evidence
    )
    if sc.expect.attacker_penalized:
        checks.append(penalized)
    for st in stats.values():
        if st.get("bytes_in"):
            st["amplification"] = round(st.get("bytes_out", 0) / st["bytes_in"], 3)
    section = {
        "start_s": round(start_s, 3),
        "latency": latency.facts,
        "penalized": penalized.facts.get("victims", {}),
        "client_attacks": [r.to_json() for r in run.attacks],
        "byzantine_stats": stats,
        "attacker_ids": len(ids) if roles else 0,
    }
    return section, checks


# -- report -----------------------------------------------------------------------------------------------
def _ms(x: float | None) -> str:
    return f"{x * 1000:.0f}ms" if isinstance(x, int | float) else "unbounded"


def _render_attack(a: dict[str, Any]) -> list[str]:
    lines = [f"attack from t={a['start_s']:.1f}s"]
    lat = a.get("latency", {})
    for w in ("baseline", "attack"):
        f = lat.get(w)
        if f:
            lines.append(
                f"  {w:8} {f['payments']:5} payments ({f['unsettled']} unsettled)  "
                f"p50 {_ms(f['p50_s'])}  p99 {_ms(f['p99_s'])}"
            )
    if "ratio" in lat:
        ratio = lat["ratio"]
        lines.append(f"  p99 ratio {'unbounded' if ratio is None else f'x{ratio:.2f}'}")
    for r in a.get("client_attacks", []):
        cut = (
            f"{r['cut']} cut by the victim (first {r['first_cut_s']}s, median {r['median_cut_s']}s, "
            f"last {r['last_cut_s']}s)"
            if r["cut"]
            else "none cut by the victim"
        )
        lines.append(
            f"  {r['kind']} on {r['node']} at t={r['started_s']:.1f}s for {r['duration_s']:g}s: "
            f"{r['opened']} opened, {cut}, {r['open_at_end']} open at the end"
        )
        for reason, n in r["refusals"].items():
            lines.append(f"    refused {n}x: {reason[:90]}")
        if r["kind"] == "long_waits":
            lines.append(
                f"    {r['long_waits_answered']} long waits answered, the longest after "
                f"{r['long_wait_max_s']}s; {r['finished_waits']} finished waits"
            )
    for n, v in a.get("penalized", {}).items():
        first = f", first {v['first_event']}: {str(v['first_reason'])[:70]}" if v["refusals"] else ""
        lines.append(f"  {n}: {v['refusals']} refusals of the attacker{first}")
    for n, st in a.get("byzantine_stats", {}).items():
        lines.append(f"  {n} stats: {st}")
    return lines


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
    if report.get("attack"):
        lines.extend(_render_attack(report["attack"]))
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
