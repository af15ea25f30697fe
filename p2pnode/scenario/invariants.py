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
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Events whose fields tie a transfer digest to (sender, seq).
_KEYED_EVENTS = ("order_submitted", "vote_sent", "certificate_applied")
CERT_EVENTS = ("certificate_formed", "certificate_applied")
WANTED_EVENTS = frozenset(_KEYED_EVENTS + CERT_EVENTS + ("peer_connected",))


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


__all__ = [
    "Check",
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
