"""The invariants checked after every scenario, as pure functions over data collected from the nodes.

Each check returns a :class:`Check` (name, ok, one-line detail, facts for the report). The runner
collects the inputs: log events from every node's JSON log, status replies, ``WaitSettled`` and
``GetAccount`` answers, and RSS samples from ``/proc``. Nothing here does I/O, so every check is
unit-tested with synthetic data, including the data that must make it fail.

Honest nodes only: a node with a Byzantine role may hold any state; the checks are about the others.

1. ``unique_certificates``   at most one certificate per (sender, seq): across all honest nodes, every
                             ``certificate_formed`` and ``certificate_applied`` for one (sender, seq)
                             names the same transfer digest.
2. ``same_root``             every honest node reports the same state root.
3. ``acknowledged_applied``  every payment a client was told had settled is applied on every honest node.
4. ``supply_conserved``      on every honest node, the balances of all accounts sum to the genesis total.
5. ``no_crash``              every honest node the timeline left running is still running.
6. ``memory_bounded``        no honest node's RSS grew by more than the bound over the run.
7. ``no_certificates_during`` (optional) no certificate formed or applied inside given time windows.
8. ``min_settled``           (optional) at least so many acknowledged payments.
9. ``accepted_settle``       (optional) every order a node accepted is applied on every honest node
                             by quiescence, even if its client gave up waiting (no order is stranded).
10. ``bounded_reconnects``   (optional) a Byzantine peer is not let back in again and again.
11. ``payers_can_pay``       (optional) at the end every payer account settles one more payment: no
                             account is frozen (an account whose slot its own conflicting orders
                             blocked, as a node reports it, is excluded and listed).
12. ``latency_under_attack`` (optional) p99 latency of the payments submitted during the attack over
                             the p99 of those submitted before it, within a bound.
13. ``attacker_penalized``   (optional) every honest node the attacker reached logged a refusal naming
                             it (peer side), or the victim of a client-port attack logged a refusal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Events whose fields tie a transfer digest to (sender, seq).
_KEYED_EVENTS = ("order_submitted", "vote_sent", "certificate_applied")
CERT_EVENTS = ("certificate_formed", "certificate_applied")
# Logged by Byzantine roles: when they start misbehaving, each fresh identity, a periodic summary.
ATTACKER_EVENTS = ("byzantine_behaviour_started", "byzantine_identity", "byzantine_stats")
# Refusals that penalize a peer (``peer`` = its short node id; ``addr`` for a refused connection) ...
PEER_REFUSALS = ("peer_penalized", "peer_slow", "peer_evicted", "connection_refused")
# ... and a client connection (with a ``reason``). ``handshake_refused`` is how a node closes a
# connection that never sent its first frame (``peers.handshake_timeout_s``).
CLIENT_REFUSALS = (
    "client_cut",
    "client_penalized",
    "client_closed",
    "connection_refused",
    "handshake_refused",
    "request_capped",  # a WaitSettled longer than limits.request_timeout_s, answered at the cap
)
WANTED_EVENTS = frozenset(
    _KEYED_EVENTS + CERT_EVENTS + ("peer_connected",) + ATTACKER_EVENTS + PEER_REFUSALS + CLIENT_REFUSALS
)
MIN_WINDOW_PAYMENTS = 20  # latency_under_attack: fewer payments in a window than this is no measurement


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "facts": self.facts}


def parse_log_lines(lines: Iterable[str], wanted: frozenset[str] = WANTED_EVENTS) -> list[dict[str, Any]]:
    """The JSON log lines whose ``event`` is in ``wanted``; a torn last line (kill -9) is skipped."""
    out = []
    for line in lines:
        if not any(f'"{w}"' in line for w in wanted):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") in wanted:
            out.append(doc)
    return out


def _keys_of(events: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, tuple[str, int]]:
    """tx -> (sender, seq), from any event that names all three, on any node."""
    keys: dict[str, tuple[str, int]] = {}
    for evs in events.values():
        for e in evs:
            if e.get("event") in _KEYED_EVENTS and "sender" in e and "seq" in e and "tx" in e:
                keys.setdefault(str(e["tx"]), (str(e["sender"]), int(e["seq"])))
    return keys


def unique_certificates(
    events: Mapping[str, Iterable[Mapping[str, Any]]],
    extra_keys: Mapping[str, tuple[str, int]] | None = None,
) -> Check:
    """At most one certificate per (sender, seq) across the given (honest) nodes' events.

    ``extra_keys`` adds tx -> (sender, seq) facts known to the caller (e.g. orders it built itself).
    """
    events = {n: list(evs) for n, evs in events.items()}
    keys = {**_keys_of(events), **(extra_keys or {})}
    seen: dict[tuple[str, int], dict[str, set[str]]] = {}  # key -> digest -> nodes
    unkeyed = 0
    for node, evs in events.items():
        for e in evs:
            if e.get("event") not in CERT_EVENTS or "tx" not in e:
                continue
            tx = str(e["tx"])
            key = keys.get(tx)
            if key is None:
                unkeyed += 1
                continue
            seen.setdefault(key, {}).setdefault(tx, set()).add(node)
    conflicts = {k: v for k, v in seen.items() if len(v) > 1}
    if conflicts:
        (sender, seq), digests = sorted(conflicts.items())[0]
        where = "; ".join(f"{tx[:16]} at {','.join(sorted(nodes))}" for tx, nodes in sorted(digests.items()))
        return Check(
            "unique_certificates",
            False,
            f"{len(conflicts)} (sender, seq) with more than one certificate, e.g. sender {sender[:16]} "
            f"seq {seq}: {where}",
            {
                "conflicts": [
                    {"sender": s, "seq": q, "certificates": {tx: sorted(n) for tx, n in d.items()}}
                    for (s, q), d in sorted(conflicts.items())
                ]
            },
        )
    return Check(
        "unique_certificates",
        True,
        f"{len(seen)} (sender, seq) certified, one certificate each",
        {"certified": len(seen), "unkeyed": unkeyed},
    )


def same_root(roots: Mapping[str, str | None]) -> Check:
    """Every node reports one and the same root (None = the node did not answer)."""
    missing = sorted(n for n, r in roots.items() if r is None)
    distinct = sorted({r for r in roots.values() if r is not None})
    facts: dict[str, Any] = {"roots": dict(roots)}
    if missing:
        return Check("same_root", False, f"no status from {', '.join(missing)}", facts)
    if len(distinct) > 1:
        groups = {r: sorted(n for n, x in roots.items() if x == r) for r in distinct}
        text = "; ".join(f"{r[:16]} at {','.join(ns)}" for r, ns in groups.items())
        return Check("same_root", False, f"{len(distinct)} different state roots: {text}", facts)
    root = distinct[0][:16] if distinct else "-"
    return Check("same_root", True, f"{len(roots)} nodes at root {root}", facts)


def acknowledged_applied(
    acked: Iterable[str], settled: Mapping[str, Iterable[str]], name: str = "acknowledged_applied"
) -> Check:
    """Every acknowledged digest is in every node's settled set. With ``name="accepted_settle"`` the
    same check over every order a node *accepted*: liveness, that nothing accepted is left stranded."""
    acked = list(dict.fromkeys(acked))
    missing: dict[str, list[str]] = {}
    for node, have in settled.items():
        have_set = set(have)
        lost = [tx for tx in acked if tx not in have_set]
        if lost:
            missing[node] = lost
    if missing:
        text = "; ".join(f"{n}: {len(v)} missing (e.g. {v[0][:16]})" for n, v in sorted(missing.items()))
        return Check(
            name,
            False,
            f"payments not applied: {text}",
            {"missing": {n: v[:20] for n, v in missing.items()}, "acknowledged": len(acked)},
        )
    return Check(
        name,
        True,
        f"{len(acked)} payments applied on {len(settled)} nodes",
        {"acknowledged": len(acked)},
    )


def supply_conserved(balances: Mapping[str, Mapping[str, int] | None], total: int) -> Check:
    """Per node: the sum of the given accounts' balances equals ``total`` (None = no answer)."""
    sums = {n: (sum(b.values()) if b is not None else None) for n, b in balances.items()}
    bad = {n: s for n, s in sums.items() if s != total}
    if bad:
        text = "; ".join(f"{n}: {s if s is not None else 'no answer'}" for n, s in sorted(bad.items()))
        return Check(
            "supply_conserved", False, f"supply is not {total}: {text}", {"sums": sums, "total": total}
        )
    return Check("supply_conserved", True, f"{total} on {len(sums)} nodes", {"total": total})


def no_crash(expected_up: Mapping[str, bool], alive: Mapping[str, bool]) -> Check:
    """Every node expected to be up (not killed for good by the timeline) is alive."""
    dead = sorted(n for n, up in expected_up.items() if up and not alive.get(n, False))
    if dead:
        return Check("no_crash", False, f"not running: {', '.join(dead)}", {"dead": dead})
    up = sum(1 for v in expected_up.values() if v)
    return Check("no_crash", True, f"{up} nodes running", {})


def memory_bounded(samples_kb: Mapping[str, Sequence[int]], bound_mb: float) -> Check:
    """RSS growth per node (peak minus first sample) within ``bound_mb``; peaks in the facts."""
    peaks = {n: max(s) for n, s in samples_kb.items() if s}
    growth = {n: max(s) - s[0] for n, s in samples_kb.items() if s}
    facts = {"peak_kb": peaks, "growth_kb": growth, "bound_mb": bound_mb}
    over = {n: g for n, g in growth.items() if g > bound_mb * 1024}
    if over:
        text = ", ".join(f"{n} +{g / 1024:.0f} MiB" for n, g in sorted(over.items()))
        return Check("memory_bounded", False, f"RSS grew beyond {bound_mb:g} MiB: {text}", facts)
    if not peaks:
        return Check("memory_bounded", True, "no samples", facts)
    top = max(peaks, key=lambda n: peaks[n])
    return Check(
        "memory_bounded",
        True,
        f"peak {peaks[top] / 1024:.0f} MiB at {top}, max growth {max(growth.values()) / 1024:.0f} MiB",
        facts,
    )


def no_certificates_during(
    events: Mapping[str, Iterable[Mapping[str, Any]]], windows: Sequence[tuple[int, int]], grace_ns: int = 0
) -> Check:
    """No ``certificate_formed`` / ``certificate_applied`` with ``ts_ns`` in [start + grace, end)."""
    hits: list[dict[str, Any]] = []
    for node, evs in events.items():
        for e in evs:
            ts = e.get("ts_ns")
            if e.get("event") not in CERT_EVENTS or not isinstance(ts, int):
                continue
            if any(start + grace_ns <= ts < end for start, end in windows):
                hits.append({"node": node, "event": e["event"], "tx": e.get("tx"), "ts_ns": ts})
    if hits:
        h = hits[0]
        return Check(
            "no_certificates_during_partition",
            False,
            f"{len(hits)} certificate events inside the partition, "
            f"e.g. {h['event']} {str(h['tx'])[:16]} at {h['node']}",
            {"hits": hits[:20]},
        )
    return Check("no_certificates_during_partition", True, f"none in {len(windows)} window(s)", {})


def bounded_reconnects(
    events: Mapping[str, Iterable[Mapping[str, Any]]], offenders: Mapping[str, str], bound: int
) -> Check:
    """Each honest node accepted at most ``bound`` connections from each Byzantine node.

    ``offenders`` maps a Byzantine node's name to the ``hex16`` of its node id (the ``peer`` field of
    ``peer_connected``). A node that disconnects a misbehaving peer but lets it straight back in
    fails this: penalties must stick for a while.
    """
    ids = {v: k for k, v in offenders.items()}
    counts: dict[str, dict[str, int]] = {}
    for node, evs in events.items():
        for e in evs:
            if e.get("event") == "peer_connected" and e.get("peer") in ids:
                per = counts.setdefault(node, {})
                name = ids[str(e["peer"])]
                per[name] = per.get(name, 0) + 1
    worst = max(
        ((n, b, c) for n, per in counts.items() for b, c in per.items()), key=lambda x: x[2], default=None
    )
    facts = {"connections": counts, "bound": bound}
    if worst is not None and worst[2] > bound:
        return Check(
            "bounded_reconnects",
            False,
            f"{worst[0]} accepted {worst[2]} connections from {worst[1]} (bound {bound}): a penalized peer "
            "is let straight back in",
            facts,
        )
    most = worst[2] if worst else 0
    return Check("bounded_reconnects", True, f"at most {most} connections from a Byzantine peer", facts)


def payers_can_pay(results: Mapping[str, tuple[str, str]]) -> Check:
    """``results``: account -> (outcome, detail) of one payment made after the run, outcome one of
    "settled", "blocked" (a node says the slot can never settle: the payer equivocated) or anything
    else (it did not settle in time: the account is frozen)."""
    frozen = {a: d for a, (o, d) in results.items() if o not in ("settled", "blocked")}
    blocked = sorted(a for a, (o, _) in results.items() if o == "blocked")
    facts = {"results": {a: {"outcome": o, "detail": d} for a, (o, d) in results.items()}, "blocked": blocked}
    if frozen:
        first = sorted(frozen)[0]
        return Check(
            "payers_can_pay",
            False,
            f"{len(frozen)} of {len(results)} payers cannot pay any more (frozen), e.g. {first}: "
            f"{frozen[first]}",
            {**facts, "frozen": sorted(frozen)},
        )
    settled = len(results) - len(blocked)
    extra = f"; {len(blocked)} blocked by their own conflicting orders" if blocked else ""
    return Check("payers_can_pay", True, f"{settled} payers settled one more payment{extra}", facts)


def min_settled(count: int, minimum: int) -> Check:
    ok = count >= minimum
    return Check("min_settled", ok, f"{count} settled, expected at least {minimum}", {"settled": count})


def attack_start_s(
    events: Mapping[str, Iterable[Mapping[str, Any]]], t0_ns: int, step_starts_s: Iterable[float] = ()
) -> float | None:
    """When the attack began, in seconds of the run (``t0_ns`` = wall clock of t = 0): the earliest of
    the first ``byzantine_behaviour_started`` in any node's log and the starts of the attack steps.
    None when there was no attack."""
    times = list(step_starts_s)
    for evs in events.values():
        for e in evs:
            ts = e.get("ts_ns")
            if e.get("event") == "byzantine_behaviour_started" and isinstance(ts, int):
                times.append((ts - t0_ns) / 1e9)
    return min(times) if times else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in (0, 1]) of ``values`` (not empty); ``inf`` sorts last."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _finite(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def _window(payments: Sequence[tuple[float, float, str]]) -> tuple[dict[str, Any], float]:
    """Facts of one window and its p99. A payment that did not settle (timeout, refusal, connection
    error) has an unbounded latency: it counts as ``inf``, so a victim that turns honest clients away
    cannot look fast."""
    lat = [s if o == "settled" else math.inf for _, s, o in payments]
    if not lat:
        return {"payments": 0, "settled": 0, "unsettled": 0, "p50_s": None, "p99_s": None}, math.inf
    p99 = percentile(lat, 0.99)
    facts = {
        "payments": len(lat),
        "settled": sum(1 for _, _, o in payments if o == "settled"),
        "unsettled": sum(1 for _, _, o in payments if o != "settled"),
        "p50_s": _finite(percentile(lat, 0.5)),
        "p99_s": _finite(p99),
    }
    return facts, p99


def latency_under_attack(
    payments: Iterable[tuple[float, float, str]],
    start_s: float | None,
    bound: float,
    min_count: int = MIN_WINDOW_PAYMENTS,
) -> Check:
    """``payments``: (submitted_s, seconds, outcome) of the honest load. The attack window is the
    payments submitted at or after ``start_s`` (it ends with the load), the baseline those before.
    Holds when p99(attack) / p99(baseline) <= ``bound``; fails when a window has fewer than
    ``min_count`` payments, or a p99 is unbounded (too many of its payments did not settle)."""
    name = "latency_under_attack"
    if start_s is None:
        return Check(name, False, "no attack started (no attack step, no byzantine_behaviour_started)", {})
    pays = list(payments)
    base_facts, base_p99 = _window([p for p in pays if p[0] < start_s])
    att_facts, att_p99 = _window([p for p in pays if p[0] >= start_s])
    facts: dict[str, Any] = {
        "attack_start_s": round(start_s, 3),
        "baseline": base_facts,
        "attack": att_facts,
        "ratio": None,
        "bound": bound,
    }
    small = [w for w, f in (("baseline", base_facts), ("attack", att_facts)) if f["payments"] < min_count]
    if small:
        text = ", ".join(f"{w} {facts[w]['payments']}" for w in small)
        return Check(name, False, f"too few payments to compare (need {min_count} per window): {text}", facts)
    if not math.isfinite(base_p99):
        return Check(
            name,
            False,
            f"baseline p99 unbounded: {base_facts['unsettled']} of {base_facts['payments']} payments before "
            "the attack did not settle",
            facts,
        )
    ratio = att_p99 / base_p99 if base_p99 > 0 else math.inf
    facts["ratio"] = _finite(ratio)
    text = (
        f"p99 {_fmt_s(att_p99)} under attack vs {_fmt_s(base_p99)} before (x{ratio:.2f}, bound x{bound:g}); "
        f"p50 {_fmt_s(att_facts['p50_s'])} vs {_fmt_s(base_facts['p50_s'])}; "
        f"{att_facts['payments']} / {base_facts['payments']} payments"
    )
    if not math.isfinite(att_p99):
        return Check(
            name,
            False,
            f"p99 under attack unbounded: {att_facts['unsettled']} of {att_facts['payments']} payments "
            f"did not settle (baseline p99 {_fmt_s(base_p99)})",
            facts,
        )
    return Check(name, ratio <= bound, text, facts)


def _fmt_s(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "unbounded"
    return f"{x * 1000:.0f}ms"


def attacker_penalized(
    events: Mapping[str, Iterable[Mapping[str, Any]]],
    attacker_ids: Iterable[str],
    start_ns: int | None,
    client_attacks: Mapping[str, int] | None = None,
    attacker_addrs: Iterable[str] = (),
    client_evidence: Mapping[str, int] | None = None,
) -> Check:
    """``events``: the honest nodes' events. Peer side: every honest node the attacker reached (an
    event of it names one of ``attacker_ids``, short node ids, or ``attacker_addrs``) logged, at or
    after ``start_ns``, one of :data:`PEER_REFUSALS` naming it. Client side: ``client_attacks`` maps
    each victim of a client-port attack to the wall clock its attack began; the victim must log one
    of :data:`CLIENT_REFUSALS` with a reason at or after it, and, where ``client_evidence`` gives
    one for it, the attacker must have seen that many refusals (connections cut, capped waits) > 0:
    on a shared 127.0.0.1 a refusal in the victim's log might have been an honest client's.
    Fails when nobody was reached."""
    ids = set(attacker_ids)
    addrs = set(attacker_addrs)
    client_attacks = dict(client_attacks or {})
    evs = {n: list(e) for n, e in events.items()}

    def names_attacker(e: Mapping[str, Any]) -> bool:
        return e.get("peer") in ids or e.get("newcomer") in ids or (bool(addrs) and e.get("addr") in addrs)

    victims: dict[str, dict[str, Any]] = {}
    for node, node_evs in evs.items():
        reached = node in client_attacks or any(names_attacker(e) for e in node_evs)
        if not reached:
            continue
        count, first = 0, None
        for e in node_evs:
            ts = e.get("ts_ns")
            if not isinstance(ts, int):
                continue
            is_peer = (
                e.get("event") in PEER_REFUSALS
                and (start_ns is None or ts >= start_ns)
                and (e.get("peer") in ids or (bool(addrs) and e.get("addr") in addrs))
            )
            since = client_attacks.get(node)
            is_client = (
                since is not None
                and e.get("event") in CLIENT_REFUSALS
                and ts >= since
                and bool(e.get("reason"))
            )
            if is_peer or is_client:
                count += 1
                if first is None or ts < first["ts_ns"]:
                    first = {"event": e["event"], "reason": str(e.get("reason", "")), "ts_ns": ts}
        seen = (client_evidence or {}).get(node)
        if seen is not None and seen <= 0:
            count = 0  # the victim logged refusals, but none of them was the attacker's
        victims[node] = {
            "refusals": count,
            "seen_by_attacker": seen,
            "first_event": first["event"] if first else None,
            "first_reason": first["reason"] if first else None,
            "client_attack": node in client_attacks,
        }
    facts: dict[str, Any] = {"victims": victims, "attacker_ids": sorted(ids)}
    if not victims:
        return Check("attacker_penalized", False, "the attacker reached no honest node", facts)
    unpunished = sorted(n for n, v in victims.items() if not v["refusals"])
    if unpunished:
        return Check(
            "attacker_penalized",
            False,
            f"{len(unpunished)} of {len(victims)} honest nodes the attacker reached never refused it: "
            + ", ".join(unpunished),
            facts,
        )
    text = "; ".join(
        f"{n}: {v['refusals']} ({v['first_event']}: {str(v['first_reason'])[:60]})"
        for n, v in sorted(victims.items())
    )
    return Check("attacker_penalized", True, text, facts)


__all__ = [
    "Check",
    "attack_start_s",
    "percentile",
    "latency_under_attack",
    "attacker_penalized",
    "parse_log_lines",
    "unique_certificates",
    "same_root",
    "acknowledged_applied",
    "supply_conserved",
    "no_crash",
    "memory_bounded",
    "no_certificates_during",
    "min_settled",
    "payers_can_pay",
]
