"""``p2pnode bench``: drive payments through a local cluster and say what they cost.

Procedure
---------
1. Read ``DIR/cluster.json`` (nodes and funded accounts) and ``DIR/pids.json`` (node process ids).
2. Ask a node for each account's next seq and balance (``GetAccount``) and spread ``--count`` payments
   over all funded accounts. Each account pays the next one, ``--amount`` each.
3. Build every order (proof included) before the clock starts, with a progress line on stderr.
4. Timed phase. Payments are assigned to nodes round-robin in build order. An account's payments are
   strictly sequential: the payment for seq n+1 is submitted only after seq n has settled at the node
   that receives seq n+1 (at its own node the client already waited for it; at another node one extra
   ``WaitSettled``, normally answered at once). Two ways to apply load:

   * ``--window W`` (closed loop, default 64): at most W payments in flight.
   * ``--rate R`` (open loop): a ticker releases one payment every 1/R s to an account that is ready. When
     every account is busy the ticker waits; the largest such delay is reported as the schedule lag, so
     a rate the cluster could not sustain is visible instead of silently turning into a lower one.

   Client-view latency of a payment: from sending ``SubmitOrder`` until ``WaitSettled`` at the same node
   answers settled.
5. After the last payment, wait until every node reports the same state root (``StatusRequest`` →
   ``info["root"]``), then read each node's CPU time again.

Shielded load (``--shielded``)
------------------------------
Every payment is a SHIELD order: ``--amount`` moves from a funded account's transparent balance into a
new note owned by that account's own shielded address. A SHIELD consumes the account's next seq, so the
per-account ordering above applies unchanged; it needs no earlier notes, so every order can be built
before the clock starts. The orders are proved with one prover helper (:mod:`p2pnode.zk.prover`, a
few hundred milliseconds per proof, in a worker thread), hence the small default count (64). The first
proof is checked against the verifying key in the cluster's genesis before any other is built, so a
cluster made with other circuit keys (or with ``--no-shielded``) fails at once with exit status 2.

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

Exit status: 0 when every payment settled and all nodes agree on the state root; 1 otherwise; 2 for
usage or setup errors (missing files, unreachable nodes, underfunded accounts).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import trio

from p2pnode.core.shielded import shielded_digest
from p2pnode.crypto import NodeKey, SpendingKey, ed25519_verify, hash256, schnorr_verify
from p2pnode.errors import LocalError, RemoteError
from p2pnode.tools.latency import Report, Stats, analyze, render_stages
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    Message,
    Order,
    SettledReply,
    ShieldedOrder,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    SubmitReply,
    SubmitShielded,
    Transfer,
    WaitSettled,
)
from p2pnode.wire.types import Address, Digest

__all__ = [
    "BenchOptions",
    "BenchResult",
    "Cluster",
    "CryptoCost",
    "add_bench_args",
    "cmd_bench",
    "cpu_per_payment",
    "crypto_per_payment",
    "load_cluster",
    "measure_groth16",
    "overhead_ratios",
    "parse_proc_stat",
    "run_bench",
    "split_count",
]

JSON_VERSION = 1
CRYPTO_RUNS = 200
GROTH16_RUNS = 10
GROTH16_BATCH = 8
DEFAULT_WINDOW = 64
DEFAULT_COUNT = 1000
DEFAULT_SHIELDED_COUNT = 64
_WAIT_SLICE_MS = 5_000  # one WaitSettled request; repeated until the payment's deadline


# == cluster files =========================================================================================
@dataclass(frozen=True, kw_only=True)
class NodeEntry:
    name: str
    host: str
    port: int
    role: str  # "validator" | "full"


@dataclass(frozen=True, kw_only=True)
class AccountEntry:
    address: bytes
    spending_key: bytes  # 32-byte scalar; secret


@dataclass(frozen=True, kw_only=True)
class Cluster:
    dir: Path
    nodes: tuple[NodeEntry, ...]
    accounts: tuple[AccountEntry, ...]
    chain_id: bytes | None  # from cluster.json if it says; else asked from a node
    pids: dict[str, int]

    @property
    def validators(self) -> int:
        return sum(1 for n in self.nodes if n.role == "validator")


def load_cluster(directory: Path) -> Cluster:
    """Parse ``DIR/cluster.json``, its account files and ``DIR/pids.json`` (optional).

    Error handling: :class:`LocalError` naming the file and the problem.
    """
    path = directory / "cluster.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        nodes = tuple(
            NodeEntry(name=str(n["name"]), host=str(n["host"]), port=int(n["port"]), role=str(n["role"]))
            for n in doc["nodes"]
        )
        accounts = []
        for entry in doc["accounts"]:
            apath = Path(entry)
            apath = apath if apath.is_absolute() else directory / apath
            acc = json.loads(apath.read_text(encoding="utf-8"))
            accounts.append(
                AccountEntry(
                    address=bytes.fromhex(acc["address"]), spending_key=bytes.fromhex(acc["spending_key"])
                )
            )
        chain = doc.get("chain_id")
        chain_id = bytes.fromhex(chain) if isinstance(chain, str) else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalError(f"{path}: cannot read the cluster definition: {exc!r}") from None
    if not nodes:
        raise LocalError(f"{path}: no nodes")
    if not accounts:
        raise LocalError(f"{path}: no accounts")
    pids: dict[str, int] = {}
    pid_path = directory / "pids.json"
    if pid_path.is_file():
        try:
            pids = {str(k): int(v) for k, v in json.loads(pid_path.read_text(encoding="utf-8")).items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise LocalError(f"{pid_path}: {exc!r}") from None
    return Cluster(dir=directory, nodes=nodes, accounts=tuple(accounts), chain_id=chain_id, pids=pids)


# == pure accounting =======================================================================================
def split_count(count: int, accounts: int) -> list[int]:
    """Payments per account: ``count`` spread as evenly as possible, the first accounts taking the rest."""
    if accounts <= 0:
        raise ValueError("no accounts")
    base, extra = divmod(count, accounts)
    return [base + (1 if i < extra else 0) for i in range(accounts)]


def parse_proc_stat(text: str, clk_tck: int) -> float:
    """CPU seconds (user + system) of a process from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces or parentheses, so fields
    are counted after the *last* ``)``: there, ``utime`` and ``stime`` (fields 14 and 15, in clock ticks)
    are items 11 and 12. Raises ``ValueError`` on anything else.
    """
    rest = text[text.rindex(")") + 1 :].split()
    return (int(rest[11]) + int(rest[12])) / clk_tck


def read_proc_cpu(pid: int) -> float | None:
    """CPU seconds of a local process and all its descendants (a node's proof-verification workers
    are child processes), or None if the process cannot be read (gone, or not on this host)."""
    clk = os.sysconf("SC_CLK_TCK")
    try:
        own = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text(), clk)
    except (OSError, ValueError, IndexError):
        return None
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
            ppid = int(text[text.rindex(")") + 1 :].split()[1])
            cpu[int(entry.name)] = parse_proc_stat(text, clk)
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = own, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        total += cpu.get(child, 0.0)
        todo.extend(children.get(child, []))
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


# == the run ===============================================================================================
class Conn(Protocol):
    """What the bench needs of a client connection (:class:`p2pnode.net.client.Client` is one)."""

    async def call(self, request: Message) -> Message: ...

    async def aclose(self) -> None: ...


Connect = Callable[[str, int], Awaitable[Conn]]
MakeOrder = Callable[[SpendingKey, bytes, bytes, int, int], Order]
TransferDigest = Callable[[Transfer], bytes]
# (account key, chain id, amount, seq) -> a SHIELD order; blocking (it proves), run in a worker thread.
MakeShielded = Callable[[SpendingKey, bytes, int, int], ShieldedOrder]


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    count: int = DEFAULT_COUNT
    amount: int = 1
    shielded: bool = False  # SHIELD orders instead of transparent transfers
    rate: float | None = None
    window: int = DEFAULT_WINDOW
    timeout: float = 30.0  # seconds a payment may take to settle; also the convergence wait


@dataclass(frozen=True, kw_only=True)
class _Planned:
    account: int
    seq: int
    node: int
    order: Order | ShieldedOrder
    digest: bytes

    def request(self) -> Message:
        if isinstance(self.order, ShieldedOrder):
            return SubmitShielded(order=self.order)
        return SubmitOrder(order=self.order)


@dataclass(kw_only=True)
class BenchResult:
    planned: int
    settled: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    schedule_lag_s: float = 0.0
    digests: list[str] = field(default_factory=list)
    roots: dict[str, str | None] = field(default_factory=dict)
    cpu_before: dict[str, float | None] = field(default_factory=dict)
    cpu_after: dict[str, float | None] = field(default_factory=dict)

    @property
    def roots_agree(self) -> bool:
        values = set(self.roots.values())
        return len(values) == 1 and None not in values


class _Pool:
    """Idle connections to one node; a connection that saw an error is closed, never reused."""

    def __init__(self, host: str, port: int, connect: Connect) -> None:
        self._host, self._port, self._connect = host, port, connect
        self._idle: list[Conn] = []

    @asynccontextmanager
    async def conn(self) -> AsyncIterator[Conn]:
        c = self._idle.pop() if self._idle else await self._connect(self._host, self._port)
        try:
            yield c
        except BaseException:
            with trio.CancelScope(shield=True):
                await c.aclose()
            raise
        self._idle.append(c)

    async def call(self, request: Message) -> Message:
        async with self.conn() as c:
            return await c.call(request)

    async def warm(self, n: int) -> None:
        """Open connections until ``n`` are idle, so that connecting is not part of the timed phase."""
        while len(self._idle) < n:
            self._idle.append(await self._connect(self._host, self._port))

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().aclose()


async def _wait_settled(pool: _Pool, digest: bytes, deadline: float) -> bool:
    while True:
        left_ms = int((deadline - trio.current_time()) * 1000)
        if left_ms <= 0:
            return False
        reply = await pool.call(WaitSettled(digest=Digest(digest), wait_ms=min(left_ms, _WAIT_SLICE_MS)))
        if not isinstance(reply, SettledReply):
            raise RemoteError(f"expected SettledReply, got {type(reply).__name__}")
        if reply.settled:
            return True


def _progress(done: int, total: int) -> None:
    if not sys.stderr.isatty():
        if done == total:
            print(f"built {total} orders", file=sys.stderr, flush=True)
        return
    if done == total or done % max(1, total // 100) == 0:
        print(
            f"\rbuilding orders {done}/{total}",
            end="\n" if done == total else "",
            file=sys.stderr,
            flush=True,
        )


async def run_bench(
    cluster: Cluster,
    opts: BenchOptions,
    *,
    connect: Connect,
    make_order: MakeOrder,
    transfer_digest: TransferDigest,
    cpu_reader: Callable[[int], float | None] = read_proc_cpu,
    progress: Callable[[int, int], None] = _progress,
    make_shielded: MakeShielded | None = None,
) -> BenchResult:
    """Plan, build, run and settle ``opts.count`` payments (see the module docstring). With
    ``opts.shielded`` the orders come from ``make_shielded`` (required then), called in a worker thread.

    Error handling: :class:`LocalError` for setup problems found before the timed phase (unreachable node,
    underfunded account, no chain id). During the timed phase a payment that is refused, times out or
    hits a connection error is recorded in ``failures`` and stops its account's later payments.
    Resource handling: every connection is closed on return, including on cancellation.
    """
    pools = [_Pool(n.host, n.port, connect) for n in cluster.nodes]
    try:
        return await _run(
            cluster, opts, pools, make_order, transfer_digest, cpu_reader, progress, make_shielded
        )
    finally:
        with trio.CancelScope(shield=True):
            for pool in pools:
                await pool.aclose()


async def _run(
    cluster: Cluster,
    opts: BenchOptions,
    pools: list[_Pool],
    make_order: MakeOrder,
    transfer_digest: TransferDigest,
    cpu_reader: Callable[[int], float | None],
    progress: Callable[[int, int], None],
    make_shielded: MakeShielded | None,
) -> BenchResult:
    plan = await _plan(cluster, opts, pools, make_order, transfer_digest, progress, make_shielded)
    result = BenchResult(planned=len(plan), digests=[p.digest.hex() for p in plan])
    lanes: dict[int, list[_Planned]] = {}
    for p in plan:
        lanes.setdefault(p.account, []).append(p)

    # Each account has at most one request in flight, so a node never needs more connections than this.
    concurrent = len(lanes) if opts.rate is not None else min(len(lanes), max(1, opts.window))
    try:
        for pool in pools:
            await pool.warm(concurrent)
    except (OSError, RemoteError) as exc:
        raise LocalError(f"cannot open {concurrent} connections per node: {exc}") from None

    result.cpu_before = _cpu_snapshot(cluster, cpu_reader)
    start = trio.current_time()
    last_settle = start

    window = trio.Semaphore(max(1, opts.window))
    send_tokens, recv_tokens = trio.open_memory_channel[float](0)

    async def ticker() -> None:
        assert opts.rate is not None
        async with send_tokens:
            for k in range(len(plan)):
                due = start + k / opts.rate
                await trio.sleep_until(due)
                await send_tokens.send(due)
                result.schedule_lag_s = max(result.schedule_lag_s, trio.current_time() - due)

    async def lane(payments: list[_Planned], tokens: trio.MemoryReceiveChannel[float] | None) -> None:
        nonlocal last_settle
        prev: _Planned | None = None
        for p in payments:
            pool = pools[p.node]
            if tokens is not None:
                try:
                    await tokens.receive()
                except trio.EndOfChannel:
                    return
            else:
                await window.acquire()
            try:
                deadline = trio.current_time() + opts.timeout
                if (
                    prev is not None
                    and prev.node != p.node
                    and not await _wait_settled(pool, prev.digest, deadline)
                ):
                    raise RemoteError(f"seq {prev.seq} did not settle at {cluster.nodes[p.node].name}")
                t0 = trio.current_time()
                reply = await pool.call(p.request())
                if not isinstance(reply, SubmitReply):
                    raise RemoteError(f"expected SubmitReply, got {type(reply).__name__}")
                if not reply.accepted:
                    raise RemoteError(f"refused: {reply.error}")
                if not await _wait_settled(pool, p.digest, t0 + opts.timeout):
                    raise RemoteError(f"not settled within {opts.timeout:g} s")
                t1 = trio.current_time()
            except (RemoteError, OSError, trio.BrokenResourceError) as exc:
                result.failures.append(
                    {
                        "tx": p.digest.hex(),
                        "account": cluster.accounts[p.account].address.hex(),
                        "seq": p.seq,
                        "node": cluster.nodes[p.node].name,
                        "error": str(exc) or type(exc).__name__,
                    }
                )
                return
            finally:
                if tokens is None:
                    window.release()
            result.latencies_s.append(t1 - t0)
            result.settled += 1
            last_settle = max(last_settle, t1)
            prev = p

    async with trio.open_nursery() as nursery:
        if opts.rate is not None:
            nursery.start_soon(ticker)
            async with trio.open_nursery() as lanes_nursery:
                for payments in lanes.values():
                    lanes_nursery.start_soon(lane, payments, recv_tokens)
            # Lanes that stopped early leave tokens nobody will take: stop the ticker.
            nursery.cancel_scope.cancel()
        else:
            for payments in lanes.values():
                nursery.start_soon(lane, payments, None)
    result.duration_s = last_settle - start

    result.roots = await _converge(cluster, pools, opts.timeout)
    result.cpu_after = _cpu_snapshot(cluster, cpu_reader)
    return result


async def _plan(
    cluster: Cluster,
    opts: BenchOptions,
    pools: list[_Pool],
    make_order: MakeOrder,
    transfer_digest: TransferDigest,
    progress: Callable[[int, int], None],
    make_shielded: MakeShielded | None = None,
) -> list[_Planned]:
    """Read accounts, check funds, and build every order (the slow part, done before the clock starts)."""
    if opts.shielded and make_shielded is None:
        raise LocalError("shielded load needs a shielded order builder")
    try:
        chain_id = cluster.chain_id
        if chain_id is None:
            status = await pools[0].call(StatusRequest())
            raw = status.info.get("chain_id") if isinstance(status, StatusReply) else None
            chain_id = bytes.fromhex(raw) if isinstance(raw, str) else raw if isinstance(raw, bytes) else None
            if chain_id is None:
                raise LocalError("the chain id is in neither cluster.json nor the node's status")
        counts = split_count(opts.count, len(cluster.accounts))
        next_seq: list[int] = []
        for acc, n in zip(cluster.accounts, counts, strict=True):
            reply = await pools[0].call(GetAccount(address=Address(acc.address)))
            if not isinstance(reply, AccountReply):
                raise LocalError(f"expected AccountReply, got {type(reply).__name__}")
            if reply.balance < n * opts.amount:
                need = n * opts.amount
                raise LocalError(
                    f"account {acc.address.hex()} holds {reply.balance}, needs {need} for {n} payments"
                )
            next_seq.append(reply.next_seq)
    except (OSError, RemoteError) as exc:
        raise LocalError(f"cannot query {cluster.nodes[0].name}: {exc}") from None

    keys = [SpendingKey.from_bytes(a.spending_key) for a in cluster.accounts]
    k = len(cluster.accounts)
    plan: list[_Planned] = []
    total = sum(counts)
    for r in range(max(counts, default=0)):
        for i in range(k):
            if r >= counts[i]:
                continue
            recipient = (
                cluster.accounts[(i + 1) % k].address if k > 1 else hash256(b"p2pnode/bench/sink")[:20]
            )
            seq = next_seq[i] + r
            node = len(plan) % len(cluster.nodes)
            if make_shielded is not None and opts.shielded:
                shielded = await trio.to_thread.run_sync(make_shielded, keys[i], chain_id, opts.amount, seq)
                planned = _Planned(
                    account=i, seq=seq, node=node, order=shielded, digest=shielded_digest(shielded.tx)
                )
            else:
                order = make_order(keys[i], chain_id, recipient, opts.amount, seq)
                planned = _Planned(
                    account=i, seq=seq, node=node, order=order, digest=transfer_digest(order.transfer)
                )
            plan.append(planned)
            progress(len(plan), total)
    return plan


def _cpu_snapshot(cluster: Cluster, reader: Callable[[int], float | None]) -> dict[str, float | None]:
    return {n.name: reader(cluster.pids[n.name]) if n.name in cluster.pids else None for n in cluster.nodes}


async def _converge(cluster: Cluster, pools: list[_Pool], timeout: float) -> dict[str, str | None]:
    """Poll every node's status until the roots agree or ``timeout`` passes; return the last roots seen."""
    roots: dict[str, str | None] = {}
    with trio.move_on_after(timeout):
        while True:
            for node, pool in zip(cluster.nodes, pools, strict=True):
                try:
                    reply = await pool.call(StatusRequest())
                except (OSError, RemoteError, trio.BrokenResourceError):
                    roots[node.name] = None
                    continue
                raw = reply.info.get("root") if isinstance(reply, StatusReply) else None
                roots[node.name] = (
                    raw.hex() if isinstance(raw, bytes) else raw if isinstance(raw, str) else None
                )
            if len(set(roots.values())) == 1 and None not in roots.values():
                break
            await trio.sleep(0.05)
    return roots


# == report ================================================================================================
def build_document(
    cluster: Cluster, opts: BenchOptions, result: BenchResult, crypto: CryptoCost, logs: Report | None
) -> dict[str, Any]:
    """The ``--json`` document (and the source of the text table)."""
    cpu = cpu_per_payment(result.cpu_before, result.cpu_after, result.settled)
    crypto_node = {
        n.name: crypto_per_payment(crypto, n.role, cluster.validators, shielded=opts.shielded)
        for n in cluster.nodes
    }
    per_node_ratio, overall = overhead_ratios(cpu, crypto_node)
    nodes = []
    for n in cluster.nodes:
        b, a = result.cpu_before.get(n.name), result.cpu_after.get(n.name)
        c = cpu.get(n.name)
        ratio = per_node_ratio.get(n.name)
        nodes.append(
            {
                "node": n.name,
                "role": n.role,
                "cpu_s": None if a is None or b is None else round(a - b, 3),
                "cpu_per_payment_ms": None if c is None else round(c * 1e3, 4),
                "crypto_per_payment_ms": round(crypto_node[n.name] * 1e3, 4),
                "overhead": None if ratio is None else round(ratio, 2),
                "root": result.roots.get(n.name),
            }
        )
    lat = Stats.of(s * 1e3 for s in result.latencies_s)
    return {
        "version": JSON_VERSION,
        "mode": {"rate": opts.rate, "window": None if opts.rate is not None else opts.window},
        "kind": "shielded" if opts.shielded else "transparent",
        "count": result.planned,
        "amount": opts.amount,
        "accounts": len(cluster.accounts),
        "settled": result.settled,
        "failures": result.failures,
        "duration_s": round(result.duration_s, 6),
        "settled_per_s": round(result.settled / result.duration_s, 2) if result.duration_s > 0 else None,
        "schedule_lag_ms": round(result.schedule_lag_s * 1e3, 3) if opts.rate is not None else None,
        "client_latency": lat.to_json(),
        "crypto": crypto.to_json() | {"validators": cluster.validators},
        "nodes": nodes,
        "overhead_ratio": None if overall is None else round(overall, 2),
        "roots_agree": result.roots_agree,
        "log_latency": None if logs is None else logs.to_json(),
    }


def _f(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


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
    if doc["schedule_lag_ms"] is not None:
        out.append(f"largest delay behind the open-loop schedule: {_f(doc['schedule_lag_ms'])} ms")
    out += [
        "",
        f"{'client latency (ms)':<28}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}",
        f"{'submit → settled (same node)':<28}{lat['count']:>7}{_f(lat['p50']):>9}{_f(lat['p90']):>9}"
        f"{_f(lat['p99']):>9}{_f(lat['max']):>9}",
    ]
    if logs is not None:
        out += ["", "from the node logs (this run's payments only):", render_stages(logs)]
        if logs.malformed:
            out.append(f"skipped {logs.malformed} malformed lines")
        out += [f"warning: {w}" for w in logs.warnings]
    c = doc["crypto"]
    out += [
        "",
        f"crypto per primitive (median of {c['runs']}): schnorr_verify {c['schnorr_verify_us']:.1f} us, "
        f"ed25519 sign {c['ed25519_sign_us']:.1f} us, ed25519 verify {c['ed25519_verify_us']:.1f} us; "
        f"{c['validators']} validators",
    ]
    if "groth16_verify_ms" in c:
        out.append(
            f"groth16 verification of this run's proofs: {c['groth16_verify_ms']:.1f} ms alone "
            f"(median of {c['groth16_runs']}), {c['groth16_batch_per_proof_ms']:.1f} ms per proof in a "
            f"batch of {c['groth16_batch']}; crypto/pay counts one unbatched verification"
        )
    out += [
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
    if doc["failures"]:
        out += [
            "",
            f"{len(doc['failures'])} payments failed (later payments of those accounts were not sent):",
        ]
        for f in doc["failures"][:20]:
            out.append(f"  {f['tx'][:16]}  seq {f['seq']} at {f['node']}: {f['error']}")
    return "\n".join(out)


# == command line ==========================================================================================
def add_bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", required=True, type=Path, help="cluster directory (made by testnet / net up)"
    )
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, help="open loop: submit R payments per second")
    load.add_argument(
        "--window", type=int, help=f"closed loop: at most W payments in flight (default {DEFAULT_WINDOW})"
    )
    parser.add_argument(
        "--count",
        type=int,
        help=f"payments to make (default {DEFAULT_COUNT}; {DEFAULT_SHIELDED_COUNT} with --shielded)",
    )
    parser.add_argument("--amount", type=int, default=1, help="amount of each payment (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a payment may take (default 30)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--shielded",
        action="store_true",
        help="SHIELD orders with Groth16 proofs (account -> own note) instead of transparent transfers",
    )


def _load_payments() -> tuple[MakeOrder, TransferDigest]:
    try:
        mod = importlib.import_module("p2pnode.core.payments")
    except ImportError as exc:
        raise LocalError(f"payments are not available: {exc}") from None
    return mod.make_order, mod.transfer_digest


async def _connect(host: str, port: int) -> Conn:
    from p2pnode.net.client import Client

    return await Client.connect(host, port)


def _log_report(cluster: Cluster, digests: Sequence[str]) -> Report | None:
    files = sorted((cluster.dir / "logs").glob("*.log"))
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

    def __init__(self, vk_json: str) -> None:
        from p2pnode.cli.shielded import open_prover

        self.vk_json = vk_json
        self.prover = open_prover()
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


def _genesis_vk(cluster: Cluster) -> str:
    from p2pnode.genesis import load_genesis

    path = cluster.dir / "genesis.toml"
    try:
        vk = load_genesis(path).shielded_vk
    except (OSError, ValueError) as exc:
        raise LocalError(f"{path}: {exc}") from None
    if vk is None:
        raise LocalError(f"{path}: this cluster has no shielded pool (it was made with --no-shielded)")
    return vk


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 if everything settled and the roots agree, 1 if not, 2 on setup errors."""
    count = args.count
    if count is None:
        count = DEFAULT_SHIELDED_COUNT if args.shielded else DEFAULT_COUNT
    bad_rate = args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0)
    if count <= 0 or args.amount <= 0 or bad_rate or (args.window is not None and args.window <= 0):
        print("p2pnode bench: --count, --amount, --rate and --window must be positive", file=sys.stderr)
        return 2
    opts = BenchOptions(
        count=count,
        amount=args.amount,
        rate=args.rate,
        window=args.window if args.window is not None else DEFAULT_WINDOW,
        timeout=args.timeout,
        shielded=args.shielded,
    )
    builder: _ShieldedBuilder | None = None
    try:
        cluster = load_cluster(args.dir)
        make_order, transfer_digest = _load_payments()
        if opts.shielded:
            builder = _ShieldedBuilder(_genesis_vk(cluster))
        result = trio.run(
            lambda: run_bench(
                cluster,
                opts,
                connect=_connect,
                make_order=make_order,
                transfer_digest=transfer_digest,
                make_shielded=builder,
            )
        )
        crypto = measure_crypto()
        if builder is not None:
            crypto = replace(crypto, groth16=measure_groth16(builder.vk_json, builder.built))
    except LocalError as exc:
        print(f"p2pnode bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if builder is not None:
            builder.close()
    logs = _log_report(cluster, result.digests)
    doc = build_document(cluster, opts, result, crypto, logs)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(render_document(doc, logs))
    return 0 if result.settled == result.planned and result.roots_agree else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p2pnode bench", description="load a local cluster and measure it")
    add_bench_args(parser)
    return cmd_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
