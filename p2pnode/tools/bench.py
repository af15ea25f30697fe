"""``p2pnode bench``: drive payments through a local cluster and say what they cost.

The load and how it is applied are described in :mod:`p2pnode.tools.bench_load`; the CPU measurement and
the crypto cost model behind the overhead ratio in :mod:`p2pnode.tools.bench_cost`. This module runs one
benchmark (:func:`run_bench_command`, given a :class:`BenchRun` that ``p2pnode bench`` builds from its
arguments in :mod:`p2pnode.cli.bench`) and renders the report built from both.

Exit status: 0 when every payment settled and all nodes agree on the state root; 1 otherwise; 2 for
usage or setup errors (missing files, unreachable nodes, underfunded accounts).
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pnode.core.committee import quorum
from p2pnode.crypto import SpendingKey
from p2pnode.errors import LocalError
from p2pnode.localnet import ClusterDir, LocalNet
from p2pnode.tools.bench_cost import (
    CryptoCost,
    Groth16Cost,
    NodeCounts,
    RoleFigures,
    Spread,
    cores,
    counts_delta,
    cpu_per_payment,
    crypto_limit,
    crypto_per_payment,
    limit_fraction,
    measure_crypto,
    measure_groth16,
    overhead_ratios,
    parse_proc_stat,
    role_figures,
)
from p2pnode.tools.bench_load import (
    SCHEDULE_LAG_P99_S,
    SCHEDULE_RATE_SHARE,
    BenchOptions,
    BenchResult,
    Conn,
    MakeOrder,
    Schedule,
    TransferDigest,
    open_loop_latencies,
    run_bench,
    schedule_report,
    split_count,
    wait_quiet,
)
from p2pnode.tools.latency import analyze
from p2pnode.tools.latency_report import Report, render_stages
from p2pnode.tools.stats import Stats
from p2pnode.wire.messages import ShieldedOrder

if TYPE_CHECKING:
    from p2pnode.zk.paths import ZkPaths

__all__ = [
    "BenchOptions",
    "BenchResult",
    "BenchRun",
    "CryptoCost",
    "Groth16Cost",
    "NodeCounts",
    "RoleFigures",
    "Schedule",
    "Spread",
    "Stats",
    "build_document",
    "new_run_id",
    "write_run_marker",
    "cores",
    "counts_delta",
    "cpu_per_payment",
    "crypto_limit",
    "crypto_per_payment",
    "limit_fraction",
    "measure_crypto",
    "measure_groth16",
    "overhead_ratios",
    "parse_proc_stat",
    "open_loop_latencies",
    "render_document",
    "role_figures",
    "run_bench",
    "run_bench_command",
    "schedule_report",
    "split_count",
    "wait_quiet",
]

# 2: crypto timed in thread CPU time with its spread, plain-crypto limit, per-role counters, open-loop
# latency from the scheduled send and the schedule's figures.
JSON_VERSION = 2


# == report ================================================================================================
def build_document(
    cluster: ClusterDir,
    opts: BenchOptions,
    result: BenchResult,
    crypto: CryptoCost,
    logs: Report | None,
    *,
    cpus: int | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The ``--json`` document (and the source of the text table). ``cpus`` is the cores the
    plain-crypto limit counts (default :func:`cores`); ``run_id`` names the run in the nodes' logs
    (``p2pnode latency --run ID``)."""
    cpus = cores() if cpus is None else cpus
    cpu = cpu_per_payment(result.cpu_before, result.cpu_after, result.settled)
    crypto_node = {
        n.name: crypto_per_payment(crypto, n.role, cluster.validators, shielded=opts.shielded)
        for n in cluster.nodes
    }
    per_node_ratio, overall = overhead_ratios(cpu, crypto_node)
    deltas = counts_delta(result.counts_before, result.counts_after)
    cpu_s: dict[str, float | None] = {}
    nodes = []
    for n in cluster.nodes:
        b, a = result.cpu_before.get(n.name), result.cpu_after.get(n.name)
        spent = cpu_s[n.name] = None if a is None or b is None or a < b else a - b
        c = cpu.get(n.name)
        ratio = per_node_ratio.get(n.name)
        delta = deltas.get(n.name)
        nodes.append(
            {
                "node": n.name,
                "role": n.role,
                "cpu_s": None if spent is None else round(spent, 3),
                "cpu_per_payment_ms": None if c is None else round(c * 1e3, 4),
                "crypto_per_payment_ms": round(crypto_node[n.name] * 1e3, 4),
                "overhead": None if ratio is None else round(ratio, 2),
                "counts": (delta or NodeCounts()).to_json(),
                "root": result.roots.get(n.name),
            }
        )
    roles = role_figures({n.name: n.role for n in cluster.nodes}, deltas, cpu_s, result.settled)
    settled_per_s = result.settled / result.duration_s if result.duration_s > 0 else None
    limit = crypto_limit(
        crypto, [n.role for n in cluster.nodes], cluster.validators, cpus, shielded=opts.shielded
    )
    fraction = limit_fraction(settled_per_s, limit)
    schedule: Schedule | None = None
    if opts.rate is not None:
        schedule = schedule_report(opts.rate, result.scheduled_s, result.sent_s)
    lat = Stats.of(s * 1e3 for s in result.latencies_s)
    return {
        "version": JSON_VERSION,
        "run_id": run_id,
        "mode": {"rate": opts.rate, "window": None if opts.rate is not None else opts.window},
        "kind": "shielded" if opts.shielded else "transparent",
        "count": result.planned,
        "amount": opts.amount,
        "accounts": len(cluster.accounts),
        "settled": result.settled,
        "failures": result.failures,
        "duration_s": round(result.duration_s, 6),
        "settled_per_s": None if settled_per_s is None else round(settled_per_s, 2),
        "schedule_lag_ms": round(result.schedule_lag_s * 1e3, 3) if opts.rate is not None else None,
        "schedule": None if schedule is None else schedule.to_json(),
        "schedule_kept": None if schedule is None else schedule.kept,
        "client_latency": lat.to_json(),
        "client_latency_from": "scheduled send" if opts.rate is not None else "send",
        "service_latency": Stats.of(s * 1e3 for s in result.service_s).to_json(),
        "crypto": crypto.to_json()
        | {"validators": cluster.validators, "quorum": quorum(cluster.validators), "quiet": result.quiet},
        "crypto_limit": {
            "cores": cpus,
            "crypto_per_payment_ms": round(sum(crypto_node.values()) * 1e3, 4),
            "payments_per_s": round(limit, 2),
            "settled_fraction": None if fraction is None else round(fraction, 4),
        },
        "roles": {r: f.to_json() for r, f in roles.items()},
        "nodes": nodes,
        "overhead_ratio": None if overall is None else round(overall, 2),
        "roots_agree": result.roots_agree,
        "log_latency": None if logs is None else logs.to_json(),
    }


def _f(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _na(v: Any, spec: str) -> str:
    """A node-reported figure: "n/a" when a node did not report it."""
    return "n/a" if v is None else format(v, spec)


def _spread_text(name: str, doc: Mapping[str, Any] | None, median: float, unit: str) -> str:
    if doc is None:
        return f"{name} {median:.1f} {unit}"
    return f"{name} {median:.1f} {unit} (p10 {doc['p10']:.1f}, p90 {doc['p90']:.1f})"


def _latency_row(label: str, st: Mapping[str, Any]) -> str:
    cells = "".join(" " + _f(st[k]).rjust(9) for k in ("p50", "p90", "p99", "max"))
    return f"{label:<28}{st['count']:>7}{cells}"


def render_document(doc: Mapping[str, Any], logs: Report | None) -> str:
    mode = (
        f"open loop, {doc['mode']['rate']:g}/s" if doc["mode"]["rate"] else f"window {doc['mode']['window']}"
    )
    lat = doc["client_latency"]
    what = "shielded payments (SHIELD orders)" if doc.get("kind") == "shielded" else "payments"
    out = [
        f"{doc['settled']}/{doc['count']} {what} settled from {doc['accounts']} accounts ({mode}) "
        f"in {_f(doc['duration_s'])} s: {_f(doc['settled_per_s'], '.1f')} payments/s",
    ]
    sched = doc.get("schedule")
    if sched is not None:
        out.append(
            f"schedule lag (actual - scheduled send): p99 {_f(sched['lag_p99_ms'])} ms, "
            f"max {_f(sched['lag_max_ms'])} ms; sent {_f(sched['sent_per_s'], '.1f')}/s of "
            f"{sched['asked_per_s']:g}/s asked"
        )
        if not sched["kept"]:
            out.append(
                f"SCHEDULE NOT KEPT: sent below {SCHEDULE_RATE_SHARE:.0%} of the asked rate or lag p99 over "
                f"{SCHEDULE_LAG_P99_S * 1e3:g} ms; the cluster could not take {sched['asked_per_s']:g}/s"
            )
    svc = doc["service_latency"]
    first = "scheduled → settled" if sched is not None else "submit → settled (same node)"
    out += [
        "",
        f"{'client latency (ms)':<28}{'n':>7}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}",
        _latency_row(first, lat),
    ]
    if sched is not None:
        out.append(_latency_row("submit → settled", svc))
    if logs is not None:
        out += ["", "from the node logs (this run's payments only):", render_stages(logs)]
        if logs.malformed:
            out.append(f"skipped {logs.malformed} malformed lines")
        out += [f"warning: {w}" for w in logs.warnings]
    c = doc["crypto"]
    sp = c.get("spread_us", {})
    quiet = {True: "nodes quiet", False: "NODES STILL BUSY", None: "node CPU unknown"}[c.get("quiet")]
    out += [
        "",
        f"crypto per primitive, thread CPU time, median of {c['runs']} before the load ({quiet}): "
        + "; ".join(
            _spread_text(label, sp.get(key), c[f"{key}_us"], "us")
            for key, label in (
                ("schnorr_verify", "schnorr verify"),
                ("ed25519_verify", "ed25519 verify"),
                ("ed25519_sign", "ed25519 sign"),
            )
        ),
    ]
    if "groth16_verify_ms" in c:
        g = _spread_text("", c.get("groth16_verify_spread_ms"), c["groth16_verify_ms"], "ms").strip()
        out.append(
            f"groth16 verification of this run's proofs: {g} alone "
            f"(median of {c['groth16_runs']}), {c['groth16_batch_per_proof_ms']:.1f} ms per proof in a "
            f"batch of {c['groth16_batch']}; crypto/pay counts one unbatched verification"
        )
    lim = doc["crypto_limit"]
    frac = lim["settled_fraction"]
    out.append(
        f"plain-crypto limit: {lim['payments_per_s']:.1f} payments/s = {lim['cores']} cores / "
        f"{lim['crypto_per_payment_ms']:.3f} ms of crypto per payment over all nodes "
        f"({c['validators']} validators, quorum {c['quorum']}); settled/s is "
        f"{_f(None if frac is None else frac * 100, '.1f')}% of it"
    )
    out += [
        "",
        f"{'per node, per payment':<22}{'nodes':>6}{'msgs rx':>9}{'frames':>8}{'KB rx':>9}{'gossip rx':>10}"
        f"{'proofs':>8}{'sigs':>7}{'verif/core-s':>14}",
    ]
    for role, r in doc["roles"].items():
        kb = r["rx_bytes_per_payment"]
        out.append(
            f"{role:<22}{r['nodes']:>6}{_na(r.get('rx_messages_per_payment'), '.2f'):>9}"
            f"{_na(r['rx_frames_per_payment'], '.2f'):>8}"
            f"{_na(None if kb is None else kb / 1024, '.2f'):>9}"
            f"{_na(r['gossip_received_per_payment'], '.2f'):>10}{_na(r['proofs_per_payment'], '.2f'):>8}"
            f"{_na(r['signatures_per_payment'], '.2f'):>7}{_na(r['verifications_per_core_s'], '.1f'):>14}"
        )
    out += [
        "",
        f"{'node':<14}{'role':<11}{'cpu s':>9}{'cpu/pay ms':>12}{'crypto/pay ms':>15}{'overhead':>10}  root",
    ]
    for n in doc["nodes"]:
        root = (n["root"] or "-")[:16]
        out.append(
            f"{n['node']:<14}{n['role']:<11}{_f(n['cpu_s']):>9}{_f(n['cpu_per_payment_ms'], '.4f'):>12}"
            f"{_f(n['crypto_per_payment_ms'], '.4f'):>15}{_f(n['overhead'], '.2f'):>10}  {root}"
        )
    out.append(
        f"overhead ratio (mean node CPU / crypto work per payment): {_f(doc['overhead_ratio'], '.2f')}"
    )
    out.append(
        "state roots agree on every node" if doc["roots_agree"] else "STATE ROOTS DIFFER (or a node is down)"
    )
    if doc.get("run_id"):
        out.append(f"run id {doc['run_id']}: p2pnode latency DIR/logs/*.log --run {doc['run_id']}")
    if doc["failures"]:
        out += [
            "",
            f"{len(doc['failures'])} payments failed (later payments of those accounts were not sent):",
        ]
        for f in doc["failures"][:20]:
            out.append(f"  {f['tx'][:16]}  seq {f['seq']} at {f['node']}: {f['error']}")
    return "\n".join(out)


# == the command ===========================================================================================
@dataclass(frozen=True, slots=True, kw_only=True)
class BenchRun:
    """One ``p2pnode bench`` run: the cluster directory, the load, and how to print the report."""

    directory: Path
    opts: BenchOptions
    json: bool = False
    zk: ZkPaths | None = None  # where the circuit keys are (shielded load only)


def _load_payments() -> tuple[MakeOrder, TransferDigest]:
    try:
        mod = importlib.import_module("p2pnode.core.payments")
    except ImportError as exc:
        raise LocalError(f"payments are not available: {exc}") from None
    return mod.make_order, mod.transfer_digest


async def _connect(host: str, port: int) -> Conn:
    from p2pnode.client import Client

    return await Client.connect(host, port)


def new_run_id() -> str:
    """A run id: the UTC start time and 6 random hex digits, e.g. ``20261202T072000Z-3fa9c1``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def write_run_marker(cluster: ClusterDir, run_id: str, phase: str) -> None:
    """Append a ``run_marker`` line (docs/logs.md) to every node's log: ``phase`` is "start" or "end".

    Each line is one ``write`` to a file opened with ``O_APPEND``, as the node's own line-buffered
    writes are, so it never lands inside a node's line. A log that cannot be written is skipped: the
    run then has no marker there, which only costs ``--run`` its window on that node.
    """
    for n in cluster.nodes:
        line = json.dumps(
            {
                "ts_ns": time.time_ns(),
                "level": "info",
                "event": "run_marker",
                "node": n.name,
                "node_id": n.node_id[:16],
                "run": run_id,
                "phase": phase,
                "by": "p2pnode bench",
            }
        )
        try:
            n.log.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(n.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            continue


def _log_report(cluster: ClusterDir, digests: Sequence[str]) -> Report | None:
    files = sorted({n.log for n in cluster.nodes if n.log.is_file()})
    if not files:
        return None

    def lines(p: Path) -> Iterator[str]:
        with p.open(encoding="utf-8", errors="replace") as f:
            yield from f

    return analyze({str(p): lines(p) for p in files}, txs=digests)


class _ShieldedBuilder:
    """SHIELD orders for :func:`run_bench`: one prover, each account's shielded keys derived once, the
    first proof checked against the genesis key. Called from one worker thread at a time.

    Resource handling: owns the prover helper process; :meth:`close` ends it.
    """

    def __init__(self, vk_json: str, zk: ZkPaths | None) -> None:
        from p2pnode.client.shielded import open_prover

        self.vk_json = vk_json
        self.prover = open_prover(zk)
        self.prover.show_progress = False  # the bench counts its proofs itself (OrderProgress)
        self.keys: dict[bytes, Any] = {}
        self.built: list[ShieldedOrder] = []

    def __call__(self, key: SpendingKey, chain_id: bytes, amount: int, seq: int) -> ShieldedOrder:
        from p2pnode.zk.notes import ShieldedKeys, build_shield

        keys = self.keys.get(key.address)
        if keys is None:
            keys = self.keys[key.address] = ShieldedKeys.from_spending_key(key.to_bytes(), self.prover)
        order = build_shield(self.prover, keys, key, chain_id, seq, amount)
        if not self.built:
            try:
                measure_groth16(self.vk_json, [order], runs=1, batch=1)
            except LocalError:
                raise LocalError(
                    "the proofs made with the local circuit keys (build/zk) do not verify under the "
                    "cluster's genesis key; create the cluster again"
                ) from None
        self.built.append(order)
        return order

    def close(self) -> None:
        self.prover.close()


def _genesis_vk(cluster: ClusterDir) -> str:
    from p2pnode.genesis import load_genesis

    path = cluster.directory / "genesis.toml"
    try:
        vk = load_genesis(path).shielded_vk
    except (OSError, ValueError) as exc:
        raise LocalError(f"{path}: {exc}") from None
    if vk is None:
        raise LocalError(f"{path}: this cluster has no shielded pool (it was made with --no-shielded)")
    return vk


def run_bench_command(run: BenchRun) -> int:
    """Run the benchmark and print its report; 0 if everything settled and the roots agree, 1 if not,
    2 on setup errors (printed as one line on stderr)."""
    opts = run.opts
    builder: _ShieldedBuilder | None = None
    try:
        net = LocalNet.open(run.directory)
        cluster = net.cluster
        make_order, transfer_digest = _load_payments()
        if opts.shielded:
            builder = _ShieldedBuilder(_genesis_vk(cluster), run.zk)
        shielded = builder
        run_id = new_run_id()
        write_run_marker(cluster, run_id, "start")

        def measure() -> CryptoCost:
            cost = measure_crypto()
            if shielded is not None:
                cost = replace(cost, groth16=measure_groth16(shielded.vk_json, shielded.built))
            return cost

        result = trio.run(
            lambda: run_bench(
                cluster,
                opts,
                connect=_connect,
                make_order=make_order,
                transfer_digest=transfer_digest,
                make_shielded=builder,
                pids=net.running(),
                measure=measure,
            )
        )
        write_run_marker(cluster, run_id, "end")
        crypto = result.crypto if result.crypto is not None else measure()
    except LocalError as exc:
        print(f"p2pnode bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if builder is not None:
            builder.close()
    logs = _log_report(cluster, result.digests)
    doc = build_document(cluster, opts, result, crypto, logs, run_id=run_id)
    if run.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(render_document(doc, logs))
    return 0 if result.settled == result.planned and result.roots_agree else 1
