"""``p2pnode scenario run``: start a cluster, drive load and faults, check the invariants, tear down.

Procedure
---------
1. Write the cluster (``p2pnode testnet`` layout) into the scenario directory. Every node gets
   ``[testing] enabled = true, fault_control = true``; nodes named in ``[roles]`` also get
   ``testing.byzantine``. Nodes with a ``start`` step are left stopped.
2. Start the other nodes and wait until each answers a status request with enough peers.
3. Run, concurrently and on one clock (``t = 0`` when the cluster is ready):

   * the load: ``load.payers`` payer tasks, each owning a share of the funded accounts, release
     payments open loop at ``load.rate`` in total. An account has one payment in flight at a time;
     when all of a payer's accounts are busy the slot is skipped and counted. A payment is
     *acknowledged* only when ``WaitSettled`` at the node it was submitted to says settled; refusals,
     timeouts and connection errors are recorded, not failures by themselves. A payment for
     (account, seq) is always the same transfer, so a retry after a timeout is the same payment,
     never a conflicting one.
   * the timeline: each ``[[step]]`` at its ``at_s``. Partitions and slow links are ``FaultControl``
     requests to each node (blocked = node ids outside its group); a restarted node gets the current
     fault state again.
   * an RSS sampler reading ``/proc/<pid>/status`` of every node twice a second.

4. Quiescence: wait until every honest running node reports the same root and unchanged applied
   counts (or the counts stop moving, or ``expect.quiesce_timeout_s`` passes).
5. Collect (status, ``WaitSettled`` for every acknowledged digest, ``GetAccount`` for every account,
   the nodes' JSON logs) and run :mod:`p2pnode.scenario.invariants`. Write ``report.json`` and
   ``report.txt`` into the directory.
6. Stop every node (``finally``), whatever happened.

Honest nodes are those without a role in ``[roles]``; the invariants are about them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pnode.cli.cluster import Cluster
from p2pnode.cli.status import query_status
from p2pnode.cli.testnet import ClusterSpec, render_node_config, write_testnet
from p2pnode.cli.wallet import load_account
from p2pnode.config import read_toml
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import SpendingKey, address_of
from p2pnode.errors import LocalError, P2PNodeError, RemoteError
from p2pnode.net.client import Client, request
from p2pnode.scenario import invariants as inv
from p2pnode.scenario.spec import Scenario, Step
from p2pnode.wire.messages import (
    AccountReply,
    FaultControl,
    GetAccount,
    Order,
    SettledReply,
    SubmitOrder,
    SubmitReply,
    WaitSettled,
)
from p2pnode.wire.types import Address, Digest

REPORT_JSON = "report.json"
REPORT_TEXT = "report.txt"
_RSS_PERIOD_S = 0.5
_QUIESCE_POLL_S = 0.5
_REQUEST_TIMEOUT_S = 5.0
_START_TIMEOUT_S = 60.0

Progress = Callable[[str], None]
# What a request to a node that is down, paused, restarting or misbehaving may raise.
_NET_ERRORS = (OSError, P2PNodeError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- records ----------------------------------------------------------------------------------------------
@dataclass
class Payment:
    tx: str
    account: int
    seq: int
    node: str
    kind: str  # "load" | "equivocation"
    submitted_s: float
    outcome: str = "pending"  # settled | refused | timeout | error
    accepted: bool = False  # the node accepted the order (SubmitReply accepted)
    error: str = ""
    seconds: float = 0.0


@dataclass
class _Account:
    index: int
    key: SpendingKey
    address: bytes
    next_seq: int = 0
    busy: bool = False


@dataclass
class _Run:
    """Mutable state of one run, shared by the tasks (all on one Trio thread)."""

    scenario: Scenario
    cluster: Cluster
    chain_id: bytes
    node_ids: dict[str, bytes]
    accounts: list[_Account]
    progress: Progress
    t0: float = 0.0
    state: dict[str, str] = field(default_factory=dict)  # up | starting | paused | killed | late
    blocked: dict[str, set[str]] = field(default_factory=dict)
    delay_ms: dict[str, int] = field(default_factory=dict)
    payments: list[Payment] = field(default_factory=list)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)  # tx -> (sender hex, seq)
    skipped: int = 0
    rss: dict[str, list[int]] = field(default_factory=dict)  # "node-1" / "node-1#2" (2nd process) -> kB
    pids_seen: dict[str, list[int]] = field(default_factory=dict)
    windows: list[list[int]] = field(default_factory=list)  # partition [start_ns, end_ns]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rr: int = 0

    def now(self) -> float:
        return trio.current_time() - self.t0

    def honest(self, name: str) -> bool:
        return name not in self.scenario.roles

    def targets(self) -> list[str]:
        up = [n for n in self.cluster.names if self.state[n] == "up"]
        return [n for n in up if self.honest(n)] or up

    def pick_node(self) -> str | None:
        targets = self.targets()
        if not targets:
            return None
        self.rr += 1
        return targets[self.rr % len(targets)]

    def addr(self, name: str) -> tuple[str, int]:
        return self.cluster.addresses()[name]


# -- preparation ------------------------------------------------------------------------------------------
def prepare(scenario: Scenario, directory: Path) -> Cluster:
    """Write the cluster for ``scenario`` into ``directory`` (which must not hold one yet)."""
    c = scenario.cluster
    defaults: dict[str, dict[str, Any]] = {k: dict(v) for k, v in c.defaults.items()}
    defaults["testing"] = {"enabled": True, "fault_control": True}
    spec = ClusterSpec(
        validators=c.validators,
        full_nodes=c.full_nodes,
        accounts=c.accounts,
        balance=c.balance,
        chain_name=f"scenario-{scenario.name}"[:64],
    )
    testnet = write_testnet(directory, spec, defaults)
    for name, role in scenario.roles.items():
        path = testnet.config_path(name)
        sections = read_toml(path)
        sections.setdefault("testing", {})["byzantine"] = role
        header = f"{name} of scenario {scenario.name!r}: Byzantine role {role!r} (test-only)."
        path.write_text(render_node_config(sections, header), encoding="utf-8")
    return Cluster(directory)


# -- node requests ----------------------------------------------------------------------------------------
async def _status(run: _Run, name: str) -> dict[str, Any] | None:
    host, port = run.addr(name)
    try:
        with trio.fail_after(_REQUEST_TIMEOUT_S):
            return await query_status(host, port)
    except _NET_ERRORS:
        return None


async def _wait_up(run: _Run, names: list[str], timeout: float) -> None:
    """Until each node answers status with min(peers.target, running - 1) peers; LocalError on timeout."""
    deadline = trio.current_time() + timeout
    pending = list(names)
    why: dict[str, str] = {}
    while pending:
        running = sum(1 for s in run.state.values() if s in ("up", "paused", "starting"))
        for name in list(pending):
            if name not in await trio.to_thread.run_sync(run.cluster.running):
                raise LocalError(f"{name} exited while starting (see {run.cluster.out_path(name)})")
            info = await _status(run, name)
            need = min(run.cluster.config(name).peers.target, max(0, running - 1))
            if info is None:
                why[name] = "no status reply"
            elif int(info.get("peer_count", 0)) < need:
                why[name] = f"peer_count {info.get('peer_count')} < {need}"
            else:
                pending.remove(name)
        if not pending:
            return
        if trio.current_time() > deadline:
            raise LocalError(
                "not ready within {:g}s: {}".format(timeout, "; ".join(f"{n}: {why.get(n)}" for n in pending))
            )
        await trio.sleep(0.1)


async def _fault(run: _Run, name: str) -> None:
    """Send ``name`` its current fault state (blocked peers, link delay)."""
    if run.state[name] != "up":
        return
    host, port = run.addr(name)
    msg = FaultControl(
        blocked=tuple(run.node_ids[b] for b in sorted(run.blocked.get(name, set()))),
        delay_ms=run.delay_ms.get(name, 0),
    )
    try:
        with trio.fail_after(_REQUEST_TIMEOUT_S):
            await request(host, port, msg)
    except _NET_ERRORS as exc:
        run.warnings.append(f"fault control to {name} failed: {exc or type(exc).__name__}")


# -- load -------------------------------------------------------------------------------------------------
def _transfer_of(run: _Run, acct: _Account, seq: int) -> tuple[bytes, int]:
    """The one transfer (recipient, amount) that ``acct`` makes at ``seq``: retries are the same payment."""
    payees = [a for a in run.accounts if a.index != acct.index]
    return payees[seq % len(payees)].address, 1 + seq % 7


def _record_order(run: _Run, order: Order) -> str:
    t = order.transfer
    tx = transfer_digest(t).hex()
    run.keys[tx] = (t.sender.hex(), t.seq)
    return tx


async def _submit(run: _Run, node: str, order: Order, timeout: float, kind: str, account: int) -> Payment:
    """Submit ``order`` at ``node`` and wait until it settles there (acknowledged) or ``timeout``."""
    tx = _record_order(run, order)
    p = Payment(tx, account, order.transfer.seq, node, kind, round(run.now(), 3))
    run.payments.append(p)
    start = trio.current_time()
    host, port = run.addr(node)
    try:
        with trio.fail_after(timeout):
            async with await Client.connect(host, port) as client:
                reply = await client.call(SubmitOrder(order=order))
                assert isinstance(reply, SubmitReply)
                if not reply.accepted:
                    p.outcome, p.error = "refused", reply.error
                else:
                    p.accepted = True
                    digest = bytes.fromhex(tx)
                    while True:
                        done = await client.call(WaitSettled(digest=Digest(digest), wait_ms=1000))
                        assert isinstance(done, SettledReply)
                        if done.settled:
                            p.outcome = "settled"
                            break
    except trio.TooSlowError:
        p.outcome, p.error = "timeout", f"not settled within {timeout:g}s"
    except (OSError, RemoteError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        p.outcome, p.error = "error", str(exc) or type(exc).__name__
    p.seconds = round(trio.current_time() - start, 4)
    return p


async def _pay_one(run: _Run, acct: _Account, node: str) -> None:
    try:
        seq = acct.next_seq
        to, amount = _transfer_of(run, acct, seq)
        order = make_order(acct.key, run.chain_id, to, amount, seq)
        p = await _submit(run, node, order, run.scenario.load.timeout_s, "load", acct.index)
        if p.outcome == "settled":
            acct.next_seq = seq + 1
    finally:
        acct.busy = False


async def _payer(run: _Run, index: int, accounts: list[_Account]) -> None:
    load = run.scenario.load
    if load.rate <= 0 or not accounts:
        return
    interval = load.payers / load.rate
    at = index * interval / load.payers  # stagger the payers
    turn = 0
    async with trio.open_nursery() as nursery:
        while at < load.duration_s:
            await trio.sleep_until(run.t0 + at)
            at += interval
            free = [a for a in accounts if not a.busy]
            node = run.pick_node()
            if not free or node is None:
                run.skipped += 1
                continue
            acct = free[turn % len(free)]
            turn += 1
            acct.busy = True
            nursery.start_soon(_pay_one, run, acct, node)


async def _load(run: _Run, payers: list[_Account]) -> None:
    n = run.scenario.load.payers
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(_payer, run, i, payers[i::n])


async def _equivocate(run: _Run, step: Step, acct: _Account) -> None:
    """Sign two different transfers for one seq and submit them at two nodes at once, ``count`` times."""
    a_node, b_node = step.nodes
    for _ in range(step.count):
        seq = acct.next_seq
        for node in (a_node, b_node):  # the account's next seq as the nodes see it
            host, port = run.addr(node)
            try:
                with trio.fail_after(_REQUEST_TIMEOUT_S):
                    reply = await request(host, port, GetAccount(address=Address(acct.address)))
                if isinstance(reply, AccountReply):
                    seq = max(seq, reply.next_seq)
            except _NET_ERRORS:
                pass
        payees = [a for a in run.accounts if a.index != acct.index]
        orders = [
            make_order(acct.key, run.chain_id, payees[0].address, 1, seq),
            make_order(acct.key, run.chain_id, payees[1].address, 2, seq),
        ]
        results: list[Payment] = []

        async def one(node: str, order: Order, results: list[Payment] = results) -> None:
            results.append(
                await _submit(run, node, order, run.scenario.load.timeout_s, "equivocation", acct.index)
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, a_node, orders[0])
            nursery.start_soon(one, b_node, orders[1])
        outcome = ", ".join(f"{p.node}: {p.outcome}" for p in results)
        run.progress(f"  equivocation seq {seq}: {outcome}")
        acct.next_seq = seq + 1


# -- timeline ---------------------------------------------------------------------------------------------
async def _step(run: _Run, step: Step, equivocator: _Account | None) -> None:
    c = run.cluster
    a = step.action
    if a == "kill":
        await trio.to_thread.run_sync(c.kill_node, step.node)
        run.state[step.node] = "killed"
    elif a in ("restart", "start"):
        await trio.to_thread.run_sync(c.start_node, step.node)
        run.state[step.node] = "starting"  # not a load target and not sampled until it is up
        await _wait_up(run, [step.node], _START_TIMEOUT_S)
        run.state[step.node] = "up"
        await _fault(run, step.node)
    elif a == "pause":
        await trio.to_thread.run_sync(c.pause_node, step.node)
        run.state[step.node] = "paused"
    elif a == "resume":
        await trio.to_thread.run_sync(c.resume_node, step.node)
        run.state[step.node] = "up"
    elif a == "partition":
        for group in step.groups:
            others = {n for g in step.groups if g is not group for n in g}
            for name in group:
                run.blocked[name] = set(others)
        async with trio.open_nursery() as nursery:
            for name in c.names:
                nursery.start_soon(_fault, run, name)
        run.windows.append([time.time_ns(), 0])
    elif a == "heal":
        if run.windows and run.windows[-1][1] == 0:
            run.windows[-1][1] = time.time_ns()
        run.blocked.clear()
        async with trio.open_nursery() as nursery:
            for name in c.names:
                nursery.start_soon(_fault, run, name)
    elif a == "slow":
        run.delay_ms[step.node] = step.delay_ms
        await _fault(run, step.node)
    elif a == "equivocate":
        assert equivocator is not None
        await _equivocate(run, step, equivocator)


async def _timeline(run: _Run, equivocator: _Account | None) -> None:
    for step in run.scenario.steps:
        await trio.sleep_until(run.t0 + step.at_s)
        started = run.now()
        run.progress(f"t={started:6.1f}s  {step.describe()}")
        await _step(run, step, equivocator)
        run.timeline.append(
            {
                "at_s": step.at_s,
                "started_s": round(started, 3),
                "done_s": round(run.now(), 3),
                "action": step.describe(),
            }
        )


# -- memory -----------------------------------------------------------------------------------------------
def read_rss_kb(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


async def _sampler(run: _Run) -> None:
    while True:
        for name, pid in run.cluster.pids().items():
            if run.state.get(name) != "up":
                continue  # starting (baseline once ready) or stopped (its memory cannot change)
            seen = run.pids_seen.setdefault(name, [])
            if pid not in seen:
                seen.append(pid)
            key = name if len(seen) == 1 else f"{name}#{len(seen)}"
            kb = read_rss_kb(pid)
            if kb is not None:
                run.rss.setdefault(key, []).append(kb)
        await trio.sleep(_RSS_PERIOD_S)


# -- quiescence and collection ----------------------------------------------------------------------------
async def _quiesce(run: _Run, names: list[str]) -> tuple[bool, float, dict[str, dict[str, Any] | None]]:
    """Wait until ``names`` agree on the root with unchanged applied counts.

    Returns (converged, seconds waited, last status of each node)."""
    start = trio.current_time()
    deadline = start + run.scenario.expect.quiesce_timeout_s
    prev: dict[str, tuple[Any, Any]] | None = None
    same = 0
    statuses: dict[str, dict[str, Any] | None] = {}
    while True:
        statuses = {n: await _status(run, n) for n in names}
        sig = {n: (s.get("applied"), s.get("root")) if s else (None, None) for n, s in statuses.items()}
        roots = {r for _, r in sig.values()}
        same = same + 1 if sig == prev else 0
        prev = sig
        converged = None not in roots and len(roots) <= 1
        if converged and same >= 2:
            return True, trio.current_time() - start, statuses
        # Counts frozen for a while with different roots: nothing is moving any more.
        if same >= 12 or trio.current_time() >= deadline:
            return converged, trio.current_time() - start, statuses
        await trio.sleep(_QUIESCE_POLL_S)


async def _settled_at(run: _Run, name: str, digests: list[str]) -> set[str] | None:
    host, port = run.addr(name)
    out: set[str] = set()
    try:
        with trio.fail_after(30 + len(digests) * 0.05):
            async with await Client.connect(host, port) as client:
                for tx in digests:
                    reply = await client.call(WaitSettled(digest=Digest(bytes.fromhex(tx)), wait_ms=0))
                    if isinstance(reply, SettledReply) and reply.settled:
                        out.add(tx)
    except _NET_ERRORS:
        return None
    return out


async def _balances_at(run: _Run, name: str) -> dict[str, int] | None:
    host, port = run.addr(name)
    out: dict[str, int] = {}
    try:
        with trio.fail_after(30):
            async with await Client.connect(host, port) as client:
                for acct in run.accounts:
                    reply = await client.call(GetAccount(address=Address(acct.address)))
                    assert isinstance(reply, AccountReply)
                    out[acct.address.hex()] = reply.balance
    except _NET_ERRORS:
        return None
    return out


def _read_events(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return inv.parse_log_lines(fh)
    except FileNotFoundError:
        return []


# -- the run ----------------------------------------------------------------------------------------------
async def run_scenario(scenario: Scenario, directory: Path, progress: Progress = _stderr) -> dict[str, Any]:
    """Run ``scenario`` in ``directory`` (created; must not hold a cluster) and return the report.

    Resource handling: every node process is stopped before this returns or raises, also on
    cancellation. Error handling: :class:`LocalError` / :class:`ConfigError` for setup failures (the
    nodes started so far are stopped); invariant violations are in the report, not raised.
    """
    directory = Path(directory).resolve()
    cluster = prepare(scenario, directory)
    testnet = cluster.testnet
    accounts = []
    for i, path in enumerate(cluster.accounts()):
        key = load_account(path)
        accounts.append(_Account(i, key, address_of(key.public)))
    run = _Run(
        scenario=scenario,
        cluster=cluster,
        chain_id=bytes.fromhex(testnet.chain_id),
        node_ids={n.name: bytes.fromhex(n.node_id) for n in testnet.nodes},
        accounts=accounts,
        progress=progress,
    )
    late = scenario.late_nodes
    run.state = {n: ("late" if n in late else "up") for n in cluster.names}
    equivocator = accounts[-1] if scenario.equivocations else None
    payers = [a for a in accounts if a is not equivocator]
    report: dict[str, Any] = {}
    wall_start = time.time()
    try:
        progress(f"scenario {scenario.name}: starting {len(cluster.names) - len(late)} nodes in {directory}")
        for name in cluster.names:
            if name not in late:
                await trio.to_thread.run_sync(cluster.start_node, name)
        await _wait_up(run, [n for n in cluster.names if n not in late], _START_TIMEOUT_S)
        run.t0 = trio.current_time()
        progress(f"t=   0.0s  cluster ready; load {scenario.load.rate:g}/s for {scenario.load.duration_s:g}s")
        async with trio.open_nursery() as outer:
            outer.start_soon(_sampler, run)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_load, run, payers)
                nursery.start_soon(_timeline, run, equivocator)
            load_done = run.now()
            progress(f"t={load_done:6.1f}s  load and timeline done; waiting for quiescence")
            honest_up = [n for n in cluster.names if run.honest(n) and run.state[n] == "up"]
            converged, quiesce_s, statuses = await _quiesce(run, honest_up)
            progress(
                f"t={run.now():6.1f}s  {'quiescent' if converged else 'NOT converged'} after {quiesce_s:.1f}s"
            )
            report = await _collect(run, honest_up, statuses, converged, quiesce_s)
            outer.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            stopped = await trio.to_thread.run_sync(cluster.down)
        if report:
            report["teardown"] = {s.name: s.outcome for s in stopped}
    report["wall_s"] = round(time.time() - wall_start, 1)
    write_report(directory, report)
    return report


async def _collect(
    run: _Run,
    honest_up: list[str],
    statuses: dict[str, dict[str, Any] | None],
    converged: bool,
    quiesce_s: float,
) -> dict[str, Any]:
    sc = run.scenario
    cluster = run.cluster
    acked = [p.tx for p in run.payments if p.outcome == "settled"]
    settled = {n: await _settled_at(run, n, acked) for n in honest_up}
    balances = {n: await _balances_at(run, n) for n in honest_up}
    running = await trio.to_thread.run_sync(cluster.running)
    events = {n: _read_events(cluster.log_path(n)) for n in cluster.names if run.honest(n)}
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
        lines.append(f"  t={t['started_s']:6.1f}s  {t['action']}")
    load = report.get("load", {})
    if load:
        lines.append(
            f"load: {load['attempted']} attempted, {load['settled']} settled, outcomes {load['outcomes']}, "
            f"{load['skipped_busy']} slots skipped (accounts busy), p50 {load['latency_p50_s']}s"
        )
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


__all__ = ["run_scenario", "prepare", "render_report", "write_report", "exit_code", "read_rss_kb"]
