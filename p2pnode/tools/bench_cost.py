"""What a ``p2pnode bench`` run cost: node CPU time read from ``/proc``, and the crypto cost model.

Crypto cost model
-----------------
Per payment and per node, the cryptographic work the protocol cannot avoid is::

    full node:  1 proof verification (schnorr_verify) + V vote verifications (ed25519_verify)
    validator:  the same + 1 vote signature (Ed25519 sign)

with V the number of validators: every node verifies each vote it receives, and votes gossip to every
node. The certificate check adds nothing (its signatures are the votes already verified and cached).
For a SHIELD order the proof verification is one Groth16 verification (``groth16_verify``) plus the
Schnorr proof of the paying account's key. Batch proof verification makes the real cost lower, so the
model is an upper bound on crypto work and the overhead ratio a lower bound. Each primitive is timed in
this process, in the same run, after the timed phase: the median of :data:`CRYPTO_RUNS` calls
(:data:`GROTH16_RUNS` for Groth16, on proofs built for this run; the batch figure is the median time of
``groth16_batch_verify`` over :data:`GROTH16_BATCH` of them, divided by that number).

Overhead ratio = mean over nodes of (node CPU seconds / settled payments) divided by the mean over the
same nodes of their crypto work per payment. 1.0 would mean the nodes do nothing but the cryptography.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from p2pnode.crypto import NodeKey, SpendingKey, ed25519_verify, hash256, schnorr_verify
from p2pnode.errors import LocalError
from p2pnode.wire.messages import ShieldedOrder

__all__ = [
    "CryptoCost",
    "Groth16Cost",
    "cpu_per_payment",
    "crypto_per_payment",
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
class Groth16Cost:
    """Seconds of one Groth16 verification (median of ``runs``) and per proof in a batch of ``batch``."""

    verify: float
    batch_per_proof: float
    batch: int
    runs: int

    def to_json(self) -> dict[str, Any]:
        return {
            "groth16_verify_ms": round(self.verify * 1e3, 3),
            "groth16_batch": self.batch,
            "groth16_batch_per_proof_ms": round(self.batch_per_proof * 1e3, 3),
            "groth16_runs": self.runs,
        }


@dataclass(frozen=True, kw_only=True)
class CryptoCost:
    """Median seconds of one call of each primitive, measured in this process."""

    schnorr_verify: float
    ed25519_sign: float
    ed25519_verify: float
    runs: int
    groth16: Groth16Cost | None = None  # measured for shielded runs only

    def to_json(self) -> dict[str, Any]:
        doc = {
            "schnorr_verify_us": round(self.schnorr_verify * 1e6, 3),
            "ed25519_sign_us": round(self.ed25519_sign * 1e6, 3),
            "ed25519_verify_us": round(self.ed25519_verify * 1e6, 3),
            "runs": self.runs,
        }
        if self.groth16 is not None:
            doc |= self.groth16.to_json()
        return doc


def crypto_per_payment(cost: CryptoCost, role: str, validators: int, *, shielded: bool = False) -> float:
    """Seconds of unavoidable crypto per payment at one node (model in the module docstring).

    Raises ``ValueError`` for a shielded payment when ``cost`` has no Groth16 figure."""
    work = cost.schnorr_verify + validators * cost.ed25519_verify
    if shielded:
        if cost.groth16 is None:
            raise ValueError("no Groth16 cost measured")
        work += cost.groth16.verify
    if role == "validator":
        work += cost.ed25519_sign
    return work


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


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e9


def measure_groth16(
    vk_json: str, orders: Sequence[ShieldedOrder], runs: int = GROTH16_RUNS, batch: int = GROTH16_BATCH
) -> Groth16Cost:
    """Time ``groth16_verify`` on the first of ``orders`` (median of ``runs``) and ``groth16_batch_verify``
    on ``batch`` of them (cycling if there are fewer; median of ``max(3, runs // 3)`` calls, per proof),
    against ``vk_json`` (snarkjs ``verification_key.json`` text), the same way a node verifies.

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
    return Groth16Cost(
        verify=_median_seconds(lambda: groth16_verify(vk, proof, public), runs),
        batch_per_proof=_median_seconds(lambda: groth16_batch_verify(vk, items), max(3, runs // 3)) / batch,
        batch=batch,
        runs=runs,
    )


def measure_crypto(runs: int = CRYPTO_RUNS) -> CryptoCost:
    """Time each primitive of the model on fresh keys and a 32-byte digest, like a vote's."""
    skey = SpendingKey.generate()
    message = hash256(b"p2pnode/bench/v1", b"crypto")
    proof = skey.prove(message)
    nkey = NodeKey.generate()
    signature = nkey.sign(message)
    if not schnorr_verify(skey.public, message, proof) or not ed25519_verify(nkey.public, signature, message):
        raise LocalError("crypto self-check failed")
    return CryptoCost(
        schnorr_verify=_median_seconds(lambda: schnorr_verify(skey.public, message, proof), runs),
        ed25519_sign=_median_seconds(lambda: nkey.sign(message), runs),
        ed25519_verify=_median_seconds(lambda: ed25519_verify(nkey.public, signature, message), runs),
        runs=runs,
    )
