"""Load generation for ``p2pnode bench``: plan, build, submit and settle payments on a local cluster.

Procedure
---------
1. The cluster (:class:`p2pnode.localnet.ClusterDir`: nodes, funded accounts, chain id) and the node
   process ids (:meth:`p2pnode.localnet.LocalNet.pids`, for the CPU readings).
2. Ask a node for each account's next seq and balance (``GetAccount``) and spread ``--count`` payments
   over all funded accounts. Each account pays the next one, ``--amount`` each.
3. Build every order (proof included) before the clock starts, with a progress line on stderr.
4. Timed phase. Payments are assigned to nodes round-robin in build order. An account's payments are
   strictly sequential: the payment for seq n+1 is submitted only after seq n has settled at the node
   that receives seq n+1 (at its own node the client already waited for it; at another node one extra
   ``WaitSettled``, normally answered at once). Two ways to apply load:

   * ``--window W`` (closed loop, default 64): at most W payments in flight.
   * ``--rate R`` (open loop): payment k is scheduled at k/R s after the start; a ticker releases it then
     to an account that is ready. When every account is busy the ticker waits, and a payment may also
     wait for its account's previous one to settle at its node: its *schedule lag* is its actual send
     time minus its scheduled one (p99 and max are reported, see :func:`schedule_report`).

   Client-view latency of a payment: until ``WaitSettled`` at the same node answers settled, counted in
   closed loop from sending ``SubmitOrder``, and in open loop from the payment's **scheduled** send time
   (a run that falls behind its schedule must not hide the wait in a lower latency: coordinated
   omission). Open loop also reports the time from the actual send (``service_latency``).
5. After the last payment, wait until every node reports the same state root (``StatusRequest`` →
   ``info["root"]``), then read each node's CPU time and counters again.

Quiet measurement and node counters
-----------------------------------
After the orders are built, and before the connections are opened and the timed phase starts, the bench
waits until the nodes' CPU counters stop moving (:func:`wait_quiet`: every node under
:data:`QUIET_CPU_SHARE` of a core over :data:`QUIET_INTERVAL_S`, for at most :data:`QUIET_TIMEOUT_S`),
then times the crypto primitives (``measure``) while the cluster is quiet. Right before and after
the timed phase it reads each node's counters from its status reply
(:class:`p2pnode.tools.bench_cost.NodeCounts`; frames and bytes
received from peers, gossip messages, proofs and signatures verified); the report uses the difference.

Shielded load (``--shielded``)
------------------------------
Every payment is a SHIELD order: ``--amount`` moves from a funded account's transparent balance into a
new note owned by that account's own shielded address. A SHIELD consumes the account's next seq, so the
per-account ordering above applies unchanged; it needs no earlier notes, so every order can be built
before the clock starts. The orders are proved with one prover helper (:mod:`p2pnode.zk.prover`, a
few hundred milliseconds per proof, in a worker thread), hence the small default count (64). The first
proof is checked against the verifying key in the cluster's genesis before any other is built, so a
cluster made with other circuit keys (or with ``--no-shielded``) fails at once with exit status 2.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from p2pnode.client import SlotBlocked, status_reply, wait_settled
from p2pnode.core.shielded import shielded_digest
from p2pnode.crypto import SpendingKey, hash256
from p2pnode.errors import LocalError, RemoteError
from p2pnode.localnet import AccountEntry, ClusterDir
from p2pnode.tools.bench_cost import CryptoCost, NodeCounts, read_proc_cpu
from p2pnode.tools.stats import percentile
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    Message,
    Order,
    ShieldedOrder,
    StatusReply,
    SubmitOrder,
    SubmitReply,
    SubmitShielded,
    Transfer,
)
from p2pnode.wire.types import Address
from p2pnode.zk.progress import Progress

__all__ = [
    "BenchOptions",
    "BenchResult",
    "Conn",
    "Connect",
    "MakeOrder",
    "MakeShielded",
    "Schedule",
    "TransferDigest",
    "open_loop_latencies",
    "run_bench",
    "schedule_report",
    "split_count",
    "wait_quiet",
]

DEFAULT_WINDOW = 64
DEFAULT_COUNT = 1000
DEFAULT_SHIELDED_COUNT = 64

# An open-loop run kept its schedule when it sent at least this share of the asked rate and the p99 of
# its payments' schedule lag stayed within SCHEDULE_LAG_P99_S.
SCHEDULE_RATE_SHARE = 0.95
SCHEDULE_LAG_P99_S = 0.100

# The cluster is quiet when every node used at most this share of one core over one interval.
QUIET_CPU_SHARE = 0.04
QUIET_INTERVAL_S = 0.5
QUIET_TIMEOUT_S = 20.0


# == pure accounting =======================================================================================
def split_count(count: int, accounts: int) -> list[int]:
    """Payments per account: ``count`` spread as evenly as possible, the first accounts taking the rest."""
    if accounts <= 0:
        raise ValueError("no accounts")
    base, extra = divmod(count, accounts)
    return [base + (1 if i < extra else 0) for i in range(accounts)]


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """How an open-loop run kept its schedule (seconds; rates in payments per second)."""

    asked_per_s: float
    sent: int
    sent_per_s: float | None  # payments sent / (last actual send + 1/R): R when on schedule
    lag_p99_s: float | None
    lag_max_s: float | None
    kept: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "asked_per_s": self.asked_per_s,
            "sent": self.sent,
            "sent_per_s": None if self.sent_per_s is None else round(self.sent_per_s, 2),
            "lag_p99_ms": None if self.lag_p99_s is None else round(self.lag_p99_s * 1e3, 3),
            "lag_max_ms": None if self.lag_max_s is None else round(self.lag_max_s * 1e3, 3),
            "kept": self.kept,
        }


def schedule_report(rate: float, scheduled: list[float], sent: list[float]) -> Schedule:
    """Schedule lag (actual - scheduled send, per payment) and whether the run kept its schedule: sent at
    :data:`SCHEDULE_RATE_SHARE` of ``rate`` or more, with lag p99 at most :data:`SCHEDULE_LAG_P99_S`.

    ``scheduled[i]`` and ``sent[i]`` are payment i's times in seconds after the start of the schedule
    (payment k is scheduled at k / rate). A run that sent nothing did not keep its schedule."""
    if len(scheduled) != len(sent):
        raise ValueError("one scheduled time per sent payment")
    if not sent:
        return Schedule(asked_per_s=rate, sent=0, sent_per_s=None, lag_p99_s=None, lag_max_s=None, kept=False)
    lags = sorted(max(0.0, a - s) for s, a in zip(scheduled, sent, strict=True))
    sent_per_s = len(sent) / (max(sent) + 1 / rate)
    p99 = percentile(lags, 99)
    kept = sent_per_s >= SCHEDULE_RATE_SHARE * rate and p99 <= SCHEDULE_LAG_P99_S
    return Schedule(
        asked_per_s=rate, sent=len(sent), sent_per_s=sent_per_s, lag_p99_s=p99, lag_max_s=lags[-1], kept=kept
    )


def open_loop_latencies(
    scheduled: list[float], sent: list[float], settled: list[float]
) -> tuple[list[float], list[float]]:
    """Per payment, (settled - scheduled send, settled - actual send): the latency a user of an open-loop
    client sees, and the node's service time. Raises ``ValueError`` on lists of different lengths."""
    if not len(scheduled) == len(sent) == len(settled):
        raise ValueError("one scheduled, sent and settled time per payment")
    return [t - s for s, t in zip(scheduled, settled, strict=True)], [
        t - a for a, t in zip(sent, settled, strict=True)
    ]


async def wait_quiet(
    read: Callable[[], Mapping[str, float | None]],
    *,
    share: float = QUIET_CPU_SHARE,
    interval: float = QUIET_INTERVAL_S,
    timeout: float = QUIET_TIMEOUT_S,
) -> bool | None:
    """Wait until, over one ``interval``, every node's CPU seconds (``read()``: node -> seconds, None if
    unreadable) grew by at most ``share * interval``. True once quiet, False if ``timeout`` passed first,
    None if no node's CPU can be read (nothing to wait for)."""
    prev = read()
    if all(v is None for v in prev.values()):
        return None
    with trio.move_on_after(timeout):
        while True:
            await trio.sleep(interval)
            now = read()
            grew = [a - b for k, a in now.items() if a is not None and (b := prev.get(k)) is not None]
            if grew and max(grew) <= share * interval:
                return True
            prev = now
    return False


# == the run ===============================================================================================
class Conn(Protocol):
    """What the bench needs of a client connection (:class:`p2pnode.client.Client` is one)."""

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
    """What one run measured (times in seconds). ``latencies_s`` is the client-view latency (open loop:
    from the scheduled send); ``service_s`` from the actual send; ``scheduled_s`` / ``sent_s`` are the
    open-loop payments' scheduled and actual send times after the start (empty in closed loop)."""

    planned: int
    settled: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    service_s: list[float] = field(default_factory=list)
    scheduled_s: list[float] = field(default_factory=list)
    sent_s: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    schedule_lag_s: float = 0.0  # the largest schedule lag (open loop)
    digests: list[str] = field(default_factory=list)
    roots: dict[str, str | None] = field(default_factory=dict)
    cpu_before: dict[str, float | None] = field(default_factory=dict)
    cpu_after: dict[str, float | None] = field(default_factory=dict)
    counts_before: dict[str, NodeCounts | None] = field(default_factory=dict)
    counts_after: dict[str, NodeCounts | None] = field(default_factory=dict)
    crypto: CryptoCost | None = None  # timed with the cluster quiet, before the load (``measure``)
    quiet: bool | None = None  # the nodes' CPU had stopped moving when it was timed (None: unknown)

    @property
    def roots_agree(self) -> bool:
        values = set(self.roots.values())
        return len(values) == 1 and None not in values


# Idle connections older than these are not reused. A node closes a connection whose first request has
# not arrived within peers.handshake_timeout_s (5 s by default), and warming 16 connections to each of 64
# nodes takes longer than that, so the first ones opened would be closed before the load reaches them; a
# client connection that has made requests is closed after limits.client_idle_s (60 s by default).
FRESH_REUSE_S = 3.0
USED_REUSE_S = 30.0
WARM_MAX = 256  # connections opened before the timed phase, in all (16 nodes x 16 accounts)


class _Pool:
    """Idle connections to one node; a connection that saw an error is closed, never reused, and one idle
    for longer than the node keeps it (``FRESH_REUSE_S``, ``USED_REUSE_S``) is replaced by a new one."""

    def __init__(self, host: str, port: int, connect: Connect) -> None:
        self._host, self._port, self._connect = host, port, connect
        self._idle: list[tuple[float, float, Conn]] = []  # (idle since, reuse limit, connection)

    @asynccontextmanager
    async def conn(self) -> AsyncIterator[Conn]:
        c: Conn | None = None
        while self._idle and c is None:
            since, limit, idle = self._idle.pop()
            if trio.current_time() - since <= limit:
                c = idle
            else:
                with trio.CancelScope(shield=True):
                    await idle.aclose()
        if c is None:
            c = await self._connect(self._host, self._port)
        try:
            yield c
        except BaseException:
            with trio.CancelScope(shield=True):
                await c.aclose()
            raise
        self._idle.append((trio.current_time(), USED_REUSE_S, c))

    async def call(self, request: Message) -> Message:
        async with self.conn() as c:
            return await c.call(request)

    async def warm(self, n: int) -> None:
        """Open connections until ``n`` are idle, so that connecting is not part of the timed phase. Each
        sends one status request at once: a connection whose first frame is late is closed by the node
        as a peer that did not complete its handshake (``peers.handshake_timeout_s``), while a client's
        may then stay idle for ``limits.client_idle_s``."""
        while len(self._idle) < n:
            c = await self._connect(self._host, self._port)
            try:
                await status_reply(c)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await c.aclose()
                raise
            self._idle.append((trio.current_time(), FRESH_REUSE_S, c))

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop()[2].aclose()


async def _wait_settled(pool: _Pool, digest: bytes, deadline: float) -> bool:
    """True once the node applied ``digest``, False at ``deadline`` (the connection is then closed)."""
    with trio.move_on_at(deadline):
        async with pool.conn() as c:
            await wait_settled(c, digest)
            return True
    return False


class OrderProgress:
    """Progress of building the orders (with --shielded, one Groth16 proof each: the slow part) on
    stderr: a live ``done/total`` line with rate and time left on a terminal, else a line at most every
    10 s and one at the end (:class:`p2pnode.zk.progress.Progress`)."""

    def __init__(self, what: str = "orders built") -> None:
        self.what = what
        self.progress: Progress | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            self.progress = Progress("bench")
            self.progress.start_counting()
        self.progress.count(self.what, done, total)


async def run_bench(
    cluster: ClusterDir,
    opts: BenchOptions,
    *,
    connect: Connect,
    make_order: MakeOrder,
    transfer_digest: TransferDigest,
    cpu_reader: Callable[[int], float | None] = read_proc_cpu,
    progress: Callable[[int, int], None] | None = None,
    make_shielded: MakeShielded | None = None,
    pids: Mapping[str, int] | None = None,
    measure: Callable[[], CryptoCost] | None = None,
) -> BenchResult:
    """Plan, build, run and settle ``opts.count`` payments (see the module docstring). With
        ``opts.shielded`` the orders come from ``make_shielded`` (required then), called in a worker thread.
    ``progress`` (default :class:`OrderProgress`) is told ``(built, total)`` after each order is built.
    ``pids`` (node name -> process id) are the processes whose CPU time ``cpu_reader`` reads. ``measure``
    (blocking, run in a worker thread once the orders are built and the nodes are quiet, before the timed
    phase) times the crypto primitives; its result is ``BenchResult.crypto``.

        Error handling: :class:`LocalError` for setup problems found before the timed phase (unreachable node,
        underfunded account, no chain id). During the timed phase a payment that is refused, times out or
        hits a connection error is recorded in ``failures`` and stops its account's later payments.
        Resource handling: every connection is closed on return, including on cancellation.
    """
    pools = [_Pool(n.host, n.port, connect) for n in cluster.nodes]
    try:
        return await _run(
            cluster,
            opts,
            pools,
            make_order,
            transfer_digest,
            cpu_reader,
            progress
            or OrderProgress("shielded orders built (one proof each)" if opts.shielded else "orders built"),
            make_shielded,
            dict(pids or {}),
            measure,
        )
    finally:
        with trio.CancelScope(shield=True):
            for pool in pools:
                await pool.aclose()


async def _run(
    cluster: ClusterDir,
    opts: BenchOptions,
    pools: list[_Pool],
    make_order: MakeOrder,
    transfer_digest: TransferDigest,
    cpu_reader: Callable[[int], float | None],
    progress: Callable[[int, int], None],
    make_shielded: MakeShielded | None,
    pids: dict[str, int],
    measure: Callable[[], CryptoCost] | None,
) -> BenchResult:
    plan = await _plan(cluster, opts, pools, make_order, transfer_digest, progress, make_shielded)
    result = BenchResult(planned=len(plan), digests=[p.digest.hex() for p in plan])
    lanes: dict[int, list[_Planned]] = {}
    for p in plan:
        lanes.setdefault(p.account, []).append(p)

    if measure is not None:
        result.quiet = await wait_quiet(lambda: _cpu_snapshot(cluster, pids, cpu_reader))
        result.crypto = await trio.to_thread.run_sync(measure)

    # Each account has at most one request in flight, so a node never needs more connections than this.
    concurrent = len(lanes) if opts.rate is not None else min(len(lanes), max(1, opts.window))
    # Beyond WARM_MAX connections in all, most would wait longer than FRESH_REUSE_S for their first
    # payment and be replaced anyway (each one a handshake_refused warning in a node's log): connect on use.
    try:
        for pool in pools if len(pools) * concurrent <= WARM_MAX else []:
            await pool.warm(concurrent)
    except (OSError, RemoteError, trio.BrokenResourceError) as exc:
        raise LocalError(f"cannot open {concurrent} connections per node: {exc}") from None

    # Counters first, CPU last (and the other way round after): the status requests cost the nodes
    # CPU outside the measured interval.
    result.counts_before = await _counts_snapshot(cluster, pools)
    result.cpu_before = _cpu_snapshot(cluster, pids, cpu_reader)
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

    async def lane(payments: list[_Planned], tokens: trio.MemoryReceiveChannel[float] | None) -> None:
        nonlocal last_settle
        prev: _Planned | None = None
        for p in payments:
            pool = pools[p.node]
            due: float | None = None
            if tokens is not None:
                try:
                    due = await tokens.receive()
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
            except (RemoteError, SlotBlocked, OSError, trio.BrokenResourceError) as exc:
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
            result.service_s.append(t1 - t0)
            if due is None:
                result.latencies_s.append(t1 - t0)
            else:  # open loop: from the scheduled send (coordinated omission)
                result.latencies_s.append(t1 - due)
                result.scheduled_s.append(due - start)
                result.sent_s.append(t0 - start)
                result.schedule_lag_s = max(result.schedule_lag_s, t0 - due)
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
    result.cpu_after = _cpu_snapshot(cluster, pids, cpu_reader)
    result.counts_after = await _counts_snapshot(cluster, pools)
    return result


async def _plan(
    cluster: ClusterDir,
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
    if not cluster.accounts:
        raise LocalError(f"{cluster.directory}: the cluster has no funded accounts")
    chain_id = cluster.chain_id
    try:
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

    keys = [_spending_key(a) for a in cluster.accounts]
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


def _cpu_snapshot(
    cluster: ClusterDir, pids: Mapping[str, int], reader: Callable[[int], float | None]
) -> dict[str, float | None]:
    return {n.name: reader(pids[n.name]) if n.name in pids else None for n in cluster.nodes}


async def _counts_snapshot(cluster: ClusterDir, pools: list[_Pool]) -> dict[str, NodeCounts | None]:
    """Every node's counters from its status reply; None for a node that did not answer."""
    out: dict[str, NodeCounts | None] = {}
    for node, pool in zip(cluster.nodes, pools, strict=True):
        try:
            reply = await status_reply(pool)
        except (OSError, RemoteError, trio.BrokenResourceError):
            out[node.name] = None
            continue
        out[node.name] = NodeCounts.from_status(reply.info) if isinstance(reply, StatusReply) else None
    return out


def _spending_key(account: AccountEntry) -> SpendingKey:
    try:
        doc = json.loads(account.path.read_text(encoding="utf-8"))
        return SpendingKey.from_bytes(bytes.fromhex(doc["spending_key"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalError(f"{account.path}: cannot read the account's key: {exc!r}") from None


async def _converge(cluster: ClusterDir, pools: list[_Pool], timeout: float) -> dict[str, str | None]:
    """Poll every node's status until the roots agree or ``timeout`` passes; return the last roots seen."""
    roots: dict[str, str | None] = {}
    with trio.move_on_after(timeout):
        while True:
            for node, pool in zip(cluster.nodes, pools, strict=True):
                try:
                    reply = await status_reply(pool)
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
