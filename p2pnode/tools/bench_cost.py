"""What a ``p2pnode bench`` run cost: node CPU time read from ``/proc``, and the crypto cost model.

Crypto cost model
-----------------
Per payment and per node, the cryptographic work the protocol cannot avoid is::

    validator:  1 proof verification + (V - 1) vote verifications (the other validators' votes)
                + 1 vote signature (Ed25519 sign)
    full node:  1 proof verification + q vote verifications (one certificate's quorum of signatures)

with V the number of validators and q = ``quorum(V)`` (:mod:`p2pnode.core.committee`). A validator's own
vote needs no check, and the certificate adds none at a validator (its signatures are the votes already
verified and cached). The proof verification is one ``schnorr_verify``; for a SHIELD order it is one
Groth16 verification (``groth16_verify``) plus the Schnorr proof of the paying account's key. Batch
verification makes the real cost lower, so the model is an upper bound on the crypto work a node must do.
:func:`crypto_per_payment` is the one place of this arithmetic.

How the primitives are timed
----------------------------
In this process, in CPU time of the calling thread (``time.thread_time_ns``), so that other processes on
the machine (the nodes, other work) do not inflate the figure as wall-clock time would. ``p2pnode bench``
times them after the orders are built and before the timed phase, once the nodes' CPU counters have
stopped moving (:func:`p2pnode.tools.bench_load.run_bench`), so the cluster is quiet. Each primitive is
called :data:`CRYPTO_RUNS` times (:data:`GROTH16_RUNS` for Groth16, on proofs built for this run) and
each call is one sample: the report gives the median and the spread (p10, p90, min, max) of the samples.
The Groth16 batch figure is the median of ``groth16_batch_verify`` over :data:`GROTH16_BATCH` proofs,
divided by that number.

Derived figures
---------------
* Overhead ratio = mean over nodes of (node CPU seconds / settled payments) divided by the mean over the
  same nodes of their crypto work per payment. 1.0 would mean the nodes do nothing but the cryptography.
* Per role (validator / full), from the nodes' own counters (:class:`NodeCounts`, the difference of
  two status replies around the timed phase): peer frames and bytes received per node per payment, and
  verifications (proofs + vote signatures) per core-second of node CPU. A figure is None (printed
  "n/a") when a node of that role does not report the counter (an older node), never estimated.
* Plain-crypto limit = cores / (sum over the cluster's nodes of their crypto work per payment): the
  payments per second this machine could settle if the nodes did nothing but the model's crypto, one
  primitive call at a time, on every core. Settled/s as a fraction of it may exceed 1 when nodes verify
  or sign in batches (a batch costs less than its calls one by one); that is not an error.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from p2pnode.core.committee import quorum
from p2pnode.crypto import NodeKey, SpendingKey, ed25519_verify, hash256, schnorr_verify
from p2pnode.errors import LocalError
from p2pnode.wire.messages import ShieldedOrder

__all__ = [
    "CryptoCost",
    "Groth16Cost",
    "Spread",
    "cores",
    "cpu_per_payment",
    "crypto_limit",
    "crypto_per_payment",
    "limit_fraction",
    "NodeCounts",
    "RoleFigures",
    "counts_delta",
    "role_figures",
    "measure_crypto",
    "measure_groth16",
    "overhead_ratios",
    "parse_proc_stat",
    "read_proc_cpu",
]

CRYPTO_RUNS = 200
GROTH16_RUNS = 10
GROTH16_BATCH = 8


# == process CPU ===========================================================================================
def parse_proc_stat(text: str, clk_tck: int) -> float:
    """CPU seconds (user + system) of a process from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces or parentheses, so fields
    are counted after the *last* ``)``: there, ``utime`` and ``stime`` (fields 14 and 15, in clock ticks)
    are items 11 and 12. Raises ``ValueError`` on anything else.
    """
    rest = text[text.rindex(")") + 1 :].split()
    return (int(rest[11]) + int(rest[12])) / clk_tck


def read_proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a local process and all its descendants (a node's proof-verification
    workers are child processes), or None if the process cannot be read (gone, or not on this host).
    Read with psutil, so it works wherever :mod:`p2pnode.localnet` does (Linux, macOS)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        members = [proc, *proc.children(recursive=True)]
        own = proc.cpu_times()
    except psutil.Error:
        return None
    total = own.user + own.system
    for child in members[1:]:
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue  # exited meanwhile
        total += t.user + t.system
    return total


def cpu_per_payment(
    before: Mapping[str, float | None], after: Mapping[str, float | None], settled: int
) -> dict[str, float | None]:
    """Per node, CPU seconds spent between two snapshots divided by the payments settled meanwhile.

    A node missing from either snapshot, whose counter went backwards (it restarted and its pid was
    reused) or a run with nothing settled gives None: no number is better than a wrong one.
    """
    out: dict[str, float | None] = {}
    for node in sorted(set(before) | set(after)):
        b, a = before.get(node), after.get(node)
        out[node] = None if b is None or a is None or a < b or settled <= 0 else (a - b) / settled
    return out


# == crypto cost model =====================================================================================
@dataclass(frozen=True, kw_only=True)
class Spread:
    """Median and spread of one primitive's samples, in seconds (nearest-rank p10 / p90)."""

    median: float
    p10: float
    p90: float
    min: float
    max: float
    samples: int

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Spread:
        """Raises ``ValueError`` on no samples."""
        from p2pnode.tools.stats import percentile

        values = sorted(seconds)
        if not values:
            raise ValueError("no samples")
        return cls(
            median=statistics.median(values),
            p10=percentile(values, 10),
            p90=percentile(values, 90),
            min=values[0],
            max=values[-1],
            samples=len(values),
        )

    def to_json(self, scale: float) -> dict[str, Any]:
        """Every figure multiplied by ``scale`` (1e6 for microseconds, 1e3 for milliseconds)."""
        return {
            "median": round(self.median * scale, 3),
            "p10": round(self.p10 * scale, 3),
            "p90": round(self.p90 * scale, 3),
            "min": round(self.min * scale, 3),
            "max": round(self.max * scale, 3),
            "samples": self.samples,
        }


@dataclass(frozen=True, kw_only=True)
class Groth16Cost:
    """Seconds of one Groth16 verification (median of ``runs``) and per proof in a batch of ``batch``;
    ``spread`` is the single verification's samples, when measured."""

    verify: float
    batch_per_proof: float
    batch: int
    runs: int
    spread: Spread | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "groth16_verify_ms": round(self.verify * 1e3, 3),
            "groth16_batch": self.batch,
            "groth16_batch_per_proof_ms": round(self.batch_per_proof * 1e3, 3),
            "groth16_runs": self.runs,
        }
        if self.spread is not None:
            doc["groth16_verify_spread_ms"] = self.spread.to_json(1e3)
        return doc


PRIMITIVES = ("schnorr_verify", "ed25519_sign", "ed25519_verify")


@dataclass(frozen=True, kw_only=True)
class CryptoCost:
    """Median seconds of one call of each primitive, measured in this process; ``spread`` holds the
    samples' spread per primitive name (:data:`PRIMITIVES`) when measured, ``clock`` what was timed."""

    schnorr_verify: float
    ed25519_sign: float
    ed25519_verify: float
    runs: int
    groth16: Groth16Cost | None = None  # measured for shielded runs only
    spread: Mapping[str, Spread] = field(default_factory=dict)
    clock: str = "thread_cpu"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schnorr_verify_us": round(self.schnorr_verify * 1e6, 3),
            "ed25519_sign_us": round(self.ed25519_sign * 1e6, 3),
            "ed25519_verify_us": round(self.ed25519_verify * 1e6, 3),
            "runs": self.runs,
            "clock": self.clock,
        }
        if self.spread:
            doc["spread_us"] = {k: v.to_json(1e6) for k, v in sorted(self.spread.items())}
        if self.groth16 is not None:
            doc |= self.groth16.to_json()
        return doc


def crypto_per_payment(cost: CryptoCost, role: str, validators: int, *, shielded: bool = False) -> float:
    """Seconds of unavoidable crypto per payment at one node of ``role`` ("validator" or "full") in a
    committee of ``validators`` (model in the module docstring).

    Raises ``ValueError`` for a shielded payment when ``cost`` has no Groth16 figure, for an unknown role
    or for no validators."""
    proof = cost.schnorr_verify
    if shielded:
        if cost.groth16 is None:
            raise ValueError("no Groth16 cost measured")
        proof += cost.groth16.verify
    if role == "validator":
        return proof + (validators - 1) * cost.ed25519_verify + cost.ed25519_sign
    if role == "full":
        return proof + quorum(validators) * cost.ed25519_verify
    raise ValueError(f"unknown role {role!r}")


def crypto_limit(
    cost: CryptoCost, roles: Iterable[str], validators: int, cpus: int, *, shielded: bool = False
) -> float:
    """The plain-crypto limit in payments per second: ``cpus`` divided by the sum, over one node per
    entry of ``roles``, of :func:`crypto_per_payment`. Raises ``ValueError`` on no nodes or no cores."""
    if cpus <= 0:
        raise ValueError("no cores")
    work = sum(crypto_per_payment(cost, r, validators, shielded=shielded) for r in roles)
    if work <= 0:
        raise ValueError("no nodes")
    return cpus / work


def limit_fraction(settled_per_s: float | None, limit: float | None) -> float | None:
    """Settled/s as a fraction of the plain-crypto limit (may exceed 1 with batching), None if unknown."""
    if settled_per_s is None or limit is None or limit <= 0:
        return None
    return settled_per_s / limit


def cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, else ``os.cpu_count()``)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)


def overhead_ratios(
    cpu: Mapping[str, float | None], crypto: Mapping[str, float]
) -> tuple[dict[str, float | None], float | None]:
    """Per node CPU/crypto per payment, and the overall ratio of the means over nodes having both."""
    per_node: dict[str, float | None] = {}
    used_cpu: list[float] = []
    used_crypto: list[float] = []
    for node in sorted(cpu):
        c, k = cpu[node], crypto.get(node)
        if c is None or k is None or k <= 0:
            per_node[node] = None
            continue
        per_node[node] = c / k
        used_cpu.append(c)
        used_crypto.append(k)
    if not used_cpu:
        return per_node, None
    return per_node, statistics.fmean(used_cpu) / statistics.fmean(used_crypto)


def cpu_samples(fn: Callable[[], object], runs: int) -> Spread:
    """Call ``fn`` ``runs`` times; the spread of the calling thread's CPU time per call, in seconds."""
    samples = []
    for _ in range(max(1, runs)):
        t0 = time.thread_time_ns()
        fn()
        samples.append(time.thread_time_ns() - t0)
    return Spread.of(ns / 1e9 for ns in samples)


def measure_groth16(
    vk_json: str, orders: Sequence[ShieldedOrder], runs: int = GROTH16_RUNS, batch: int = GROTH16_BATCH
) -> Groth16Cost:
    """Time ``groth16_verify`` on the first of ``orders`` (``runs`` samples of thread CPU time) and
    ``groth16_batch_verify`` on ``batch`` of them (cycling if there are fewer; median of
    ``max(3, runs // 3)`` calls, per proof), against ``vk_json`` (snarkjs ``verification_key.json``
    text), the same way a node verifies.

    Error handling: :class:`LocalError` if there is no order or a proof does not verify (the key is not
    the one the orders were proved for).
    """
    from p2pnode.crypto.groth16 import VerifyingKey, groth16_batch_verify, groth16_verify, proof_from_bytes
    from p2pnode.zk.notes import public_inputs

    if not orders:
        raise LocalError("no shielded order to time the verification on")
    vk = VerifyingKey.from_json(json.loads(vk_json))
    items = [
        (proof_from_bytes(o.proof), public_inputs(o.tx))
        for o in (orders[i % len(orders)] for i in range(batch))
    ]
    proof, public = items[0]
    if not groth16_verify(vk, proof, public) or not groth16_batch_verify(vk, items):
        raise LocalError("a shielded proof built for this run does not verify under the genesis key")
    single = cpu_samples(lambda: groth16_verify(vk, proof, public), runs)
    batched = cpu_samples(lambda: groth16_batch_verify(vk, items), max(3, runs // 3))
    return Groth16Cost(
        verify=single.median, batch_per_proof=batched.median / batch, batch=batch, runs=runs, spread=single
    )


def measure_crypto(runs: int = CRYPTO_RUNS) -> CryptoCost:
    """Time each primitive of the model on fresh keys and a 32-byte digest, like a vote's: ``runs``
    samples each, in thread CPU time (see the module docstring)."""
    skey = SpendingKey.generate()
    message = hash256(b"p2pnode/bench/v1", b"crypto")
    proof = skey.prove(message)
    nkey = NodeKey.generate()
    signature = nkey.sign(message)
    if not schnorr_verify(skey.public, message, proof) or not ed25519_verify(nkey.public, signature, message):
        raise LocalError("crypto self-check failed")
    spread = {
        "schnorr_verify": cpu_samples(lambda: schnorr_verify(skey.public, message, proof), runs),
        "ed25519_sign": cpu_samples(lambda: nkey.sign(message), runs),
        "ed25519_verify": cpu_samples(lambda: ed25519_verify(nkey.public, signature, message), runs),
    }
    return CryptoCost(
        schnorr_verify=spread["schnorr_verify"].median,
        ed25519_sign=spread["ed25519_sign"].median,
        ed25519_verify=spread["ed25519_verify"].median,
        runs=runs,
        spread=spread,
    )


# == node counters =========================================================================================
@dataclass(frozen=True, kw_only=True)
class NodeCounts:
    """Counters one node reports in its status reply (None: the node does not report it).

    ``rx_frames`` / ``rx_bytes``: peer frames received after the handshake and their bytes
    (``counters``); ``rx_messages``: peer messages in them (a Bundle frame carries several);
    ``gossip_received`` / ``gossip_duplicate``: gossip messages (``gossip``);
    ``proofs`` / ``signatures``: proofs handed to the verifier and vote signatures verified
    (``verified``)."""

    rx_frames: int | None = None
    rx_messages: int | None = None
    rx_bytes: int | None = None
    gossip_received: int | None = None
    gossip_duplicate: int | None = None
    proofs: int | None = None
    signatures: int | None = None

    @classmethod
    def from_status(cls, info: Mapping[str, Any]) -> NodeCounts:
        def get(section: str, key: str) -> int | None:
            d = info.get(section)
            v = d.get(key) if isinstance(d, Mapping) else None
            return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None

        return cls(
            rx_frames=get("counters", "rx_frames"),
            rx_messages=get("counters", "rx_messages"),
            rx_bytes=get("counters", "rx_bytes"),
            gossip_received=get("gossip", "received"),
            gossip_duplicate=get("gossip", "duplicate"),
            proofs=get("verified", "proofs"),
            signatures=get("verified", "signatures"),
        )

    def since(self, before: NodeCounts) -> NodeCounts:
        """The growth from ``before``; None where either lacks a counter or it went backwards (restart)."""

        def d(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None or a < b else a - b

        return NodeCounts(
            rx_frames=d(self.rx_frames, before.rx_frames),
            rx_messages=d(self.rx_messages, before.rx_messages),
            rx_bytes=d(self.rx_bytes, before.rx_bytes),
            gossip_received=d(self.gossip_received, before.gossip_received),
            gossip_duplicate=d(self.gossip_duplicate, before.gossip_duplicate),
            proofs=d(self.proofs, before.proofs),
            signatures=d(self.signatures, before.signatures),
        )

    def to_json(self) -> dict[str, int | None]:
        return {
            "rx_frames": self.rx_frames,
            "rx_messages": self.rx_messages,
            "rx_bytes": self.rx_bytes,
            "gossip_received": self.gossip_received,
            "gossip_duplicate": self.gossip_duplicate,
            "proofs": self.proofs,
            "signatures": self.signatures,
        }


def counts_delta(
    before: Mapping[str, NodeCounts | None], after: Mapping[str, NodeCounts | None]
) -> dict[str, NodeCounts | None]:
    """Per node, the counters' growth between two snapshots (None for a node missing from either)."""
    out: dict[str, NodeCounts | None] = {}
    for node in sorted(set(before) | set(after)):
        b, a = before.get(node), after.get(node)
        out[node] = None if a is None or b is None else a.since(b)
    return out


@dataclass(frozen=True, kw_only=True)
class RoleFigures:
    """Per node of one role and per settled payment (means over the role's nodes), and verifications per
    core-second of those nodes' CPU. None where any node of the role lacks the figure."""

    nodes: int
    rx_frames_per_payment: float | None
    rx_messages_per_payment: float | None
    rx_bytes_per_payment: float | None
    gossip_received_per_payment: float | None
    proofs_per_payment: float | None
    signatures_per_payment: float | None
    verifications_per_core_s: float | None

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None, nd: int) -> float | None:
            return None if v is None else round(v, nd)

        return {
            "nodes": self.nodes,
            "rx_frames_per_payment": r(self.rx_frames_per_payment, 3),
            "rx_messages_per_payment": r(self.rx_messages_per_payment, 3),
            "rx_bytes_per_payment": r(self.rx_bytes_per_payment, 1),
            "gossip_received_per_payment": r(self.gossip_received_per_payment, 3),
            "proofs_per_payment": r(self.proofs_per_payment, 3),
            "signatures_per_payment": r(self.signatures_per_payment, 3),
            "verifications_per_core_s": r(self.verifications_per_core_s, 1),
        }


def role_figures(
    roles: Mapping[str, str],
    counts: Mapping[str, NodeCounts | None],
    cpu_s: Mapping[str, float | None],
    settled: int,
) -> dict[str, RoleFigures]:
    """Per role (``roles``: node -> role), from each node's counter growth (``counts``) and CPU seconds
    (``cpu_s``) over the timed phase and the payments ``settled`` meanwhile."""
    by_role: dict[str, list[str]] = {}
    for node, role in roles.items():
        by_role.setdefault(role, []).append(node)
    out: dict[str, RoleFigures] = {}
    for role, nodes in sorted(by_role.items()):
        deltas = [counts.get(n) for n in nodes]
        per_node_payments = len(nodes) * settled

        def per_payment(total: int | None, n: int = per_node_payments) -> float | None:
            return None if total is None or n <= 0 else total / n

        proofs, sigs = _total(deltas, "proofs"), _total(deltas, "signatures")
        cpus = [cpu_s.get(n) for n in nodes]
        cpu_total = None if any(c is None for c in cpus) else sum(c for c in cpus if c is not None)
        vps = (
            None
            if proofs is None or sigs is None or cpu_total is None or cpu_total <= 0
            else (proofs + sigs) / cpu_total
        )
        out[role] = RoleFigures(
            nodes=len(nodes),
            rx_frames_per_payment=per_payment(_total(deltas, "rx_frames")),
            rx_messages_per_payment=per_payment(_total(deltas, "rx_messages")),
            rx_bytes_per_payment=per_payment(_total(deltas, "rx_bytes")),
            gossip_received_per_payment=per_payment(_total(deltas, "gossip_received")),
            proofs_per_payment=per_payment(proofs),
            signatures_per_payment=per_payment(sigs),
            verifications_per_core_s=vps,
        )
    return out


def _total(deltas: Sequence[NodeCounts | None], name: str) -> int | None:
    """The sum of one counter over nodes, or None if any node lacks it."""
    total = 0
    for d in deltas:
        v = None if d is None else getattr(d, name)
        if not isinstance(v, int):
            return None
        total += v
    return total
