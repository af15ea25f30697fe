"""``p2pnode scenario run``: start a cluster, drive load and faults, check the invariants, tear down.

Procedure
---------
1. Write the cluster (``p2pnode testnet`` layout) into the scenario directory. Every node gets
   ``[testing] enabled = true, fault_control = true``; nodes named in ``[roles]`` also get
   ``testing.byzantine``. Nodes with a ``start`` step are left stopped.
2. Start the other nodes and wait until they are ready (:meth:`p2pnode.localnet.LocalNet.wait_ready`:
   the expected chain and node id on each address, enough peers).
3. Run, concurrently and on one clock (``t = 0`` when the cluster is ready):

   * the load (:mod:`p2pnode.scenario.load`): ``load.payers`` payer tasks, each owning a share of the
     funded accounts, release payments open loop at ``load.rate`` in total. An account has one payment
     in flight at a time; when all of a payer's accounts are busy the slot is skipped and counted. A
     payment is *acknowledged* only when ``WaitSettled`` at the node it was submitted to says settled;
     refusals, timeouts and connection errors are recorded, not failures by themselves. A payment for
     (account, seq) is always the same transfer, so a retry after a timeout is the same payment, never a
     conflicting one.
   * the timeline: each ``[[step]]`` at its ``at_s``, one after the other. A ``kill`` with
     ``when = "next_ack"`` is armed at its ``at_s`` and fires inside the payer task that receives the
     next acknowledgement, before any other task runs (so the nodes die at the instant they answered
     "settled"); without an acknowledgement within ``ACK_TRIGGER_TIMEOUT_S`` it fires anyway, with a
     warning in the report. ``kill`` / ``restart`` of several nodes signal (start) all of them first,
     then wait. Partitions and slow links are ``FaultControl``
     requests to each node (blocked = node ids outside its group); a restarted node gets the current
     fault state again.
   * an RSS sampler reading every node's resident memory (psutil) twice a second.
   * ``attack`` steps (:mod:`p2pnode.scenario.attacks`): client-port attacks from this process
     against the victim's port, beside the timeline, each bounded in connections and time and
     closing everything it opened when it ends.

4. Quiescence: wait until every honest running node reports the same root and unchanged applied
   counts (or the counts stop moving, or ``expect.quiesce_timeout_s`` passes). With
   ``expect.payers_can_pay`` every payer account then makes one more payment (its order in doubt, if
   any, first: the same transfer for the same seq), bounded by ``expect.final_payment_timeout_s``,
   and the runner waits for quiescence again.
5. Collect (status, ``WaitSettled`` for every acknowledged digest, ``GetAccount`` for every account,
   the nodes' JSON logs) and run :mod:`p2pnode.scenario.invariants`. Write ``report.json`` and
   ``report.txt`` into the directory (:mod:`p2pnode.scenario.report`).
6. Stop every node (``finally``), whatever happened.

Honest nodes are those without a role in ``[roles]``; the invariants are about them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import trio

from p2pnode.client import load_account, request
from p2pnode.config import read_toml
from p2pnode.crypto import address_of
from p2pnode.localnet import ClusterSpec, LocalNet, render_node_config, write_cluster
from p2pnode.scenario.attacks import AttackRecord, run_attack
from p2pnode.scenario.load import equivocate, final_payments, run_load
from p2pnode.scenario.report import collect, exit_code, render_report, write_report
from p2pnode.scenario.spec import Scenario, Step
from p2pnode.scenario.state import NET_ERRORS, REQUEST_TIMEOUT_S, Account, Payment, Progress, Run
from p2pnode.testing.faults import ACCOUNT_ROLES, FaultControl
from p2pnode.zk.paths import ZkPaths

_RSS_PERIOD_S = 0.5
_QUIESCE_POLL_S = 0.5
_START_TIMEOUT_S = 60.0
ACK_TRIGGER_TIMEOUT_S = 10.0  # an armed ``when = "next_ack"`` kill fires anyway after this long


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- preparation ------------------------------------------------------------------------------------------
def prepare(
    scenario: Scenario, directory: Path, *, shielded: bool = True, zk: ZkPaths | None = None
) -> LocalNet:
    """Write the cluster for ``scenario`` into ``directory`` (which must not hold one yet); ``shielded``
    and ``zk`` as for :class:`ClusterSpec` and :func:`write_cluster`."""
    c = scenario.cluster
    defaults: dict[str, dict[str, Any]] = {k: dict(v) for k, v in c.defaults.items()}
    defaults["testing"] = {"enabled": True, "fault_control": True}
    spec = ClusterSpec(
        validators=c.validators,
        full_nodes=c.full_nodes,
        accounts=c.accounts,
        balance=c.balance,
        chain_name=f"scenario-{scenario.name}"[:64],
        shielded=shielded,
        defaults=defaults,
    )
    cluster = write_cluster(spec, directory, zk=zk, log=_stderr)
    for name, role in scenario.roles.items():
        path = cluster.node(name).config
        sections = read_toml(path)
        sections.setdefault("testing", {})["byzantine"] = role
        header = f"{name} of scenario {scenario.name!r}: Byzantine role {role!r} (test-only)."
        path.write_text(render_node_config(sections, header), encoding="utf-8")
    return LocalNet(cluster)


# -- node requests ----------------------------------------------------------------------------------------
async def _status(run: Run, name: str) -> dict[str, Any] | None:
    try:
        with trio.fail_after(REQUEST_TIMEOUT_S):
            return await run.cluster.status(name)
    except NET_ERRORS:
        return None


async def _wait_up(run: Run, names: list[str], timeout: float) -> None:
    """:meth:`LocalNet.wait_ready` for ``names``; LocalError after ``timeout`` seconds."""
    try:
        with trio.fail_after(timeout):
            await run.cluster.wait_ready(names)
    except trio.TooSlowError:
        raise run.cluster.failure(names, f"{', '.join(names)}: not ready within {timeout:g}s") from None


async def _fault(run: Run, name: str) -> None:
    """Send ``name`` its current fault state (blocked peers, link delay)."""
    if run.state[name] != "up":
        return
    host, port = run.addr(name)
    msg = FaultControl(
        blocked=tuple(run.node_ids[b] for b in sorted(run.blocked.get(name, set()))),
        delay_ms=run.delay_ms.get(name, 0),
    )
    try:
        with trio.fail_after(REQUEST_TIMEOUT_S):
            await request(host, port, msg)
    except NET_ERRORS as exc:
        run.warnings.append(f"fault control to {name} failed: {exc or type(exc).__name__}")


# -- timeline ---------------------------------------------------------------------------------------------
async def _step(run: Run, step: Step, equivocator: Account | None) -> None:
    c = run.cluster
    a = step.action
    if a == "kill":
        await trio.to_thread.run_sync(_kill_now, run, step)
    elif a in ("restart", "start"):
        await trio.to_thread.run_sync(lambda: c.start(*step.targets))
        for name in step.targets:
            run.state[name] = "starting"  # not a load target and not sampled until it is up
        await _wait_up(run, list(step.targets), _START_TIMEOUT_S)
        for name in step.targets:
            run.state[name] = "up"
            await _fault(run, name)
    elif a == "pause":
        await trio.to_thread.run_sync(c.pause, step.node)
        run.state[step.node] = "paused"
    elif a == "resume":
        await trio.to_thread.run_sync(c.resume, step.node)
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
        await equivocate(run, step, equivocator)
    elif a == "attack":
        host, port = run.addr(step.node)
        rec = AttackRecord(
            node=step.node,
            kind=step.kind,
            count=step.count,
            duration_s=step.duration_s,
            started_s=run.now(),
            started_ns=time.time_ns(),
        )
        run.attacks.append(rec)
        await run_attack(rec, host, port)
        run.progress(f"t={run.now():6.1f}s  attack over: {rec.summary()}")


def _kill_now(run: Run, step: Step) -> None:
    """SIGKILL every target of ``step`` at once (synchronous: it runs inside the ack hook too)."""
    run.cluster.kill(*step.targets)
    for name in step.targets:
        run.state[name] = "killed"


async def _at_next_ack(run: Run, step: Step) -> str:
    """Arm ``step`` (a kill) to run the instant the next payment is acknowledged; wait until it has."""
    fired: list[Payment] = []
    done = trio.Event()

    def hook(p: Payment) -> None:
        _kill_now(run, step)
        fired.append(p)
        done.set()

    run.on_ack = hook
    with trio.move_on_after(ACK_TRIGGER_TIMEOUT_S):
        await done.wait()
    if fired:
        p = fired[0]
        return f"{p.node} acknowledged {p.tx[:16]} (account {p.account}, seq {p.seq})"
    run.on_ack = None
    run.warnings.append(f"{step.describe()}: no acknowledgement within {ACK_TRIGGER_TIMEOUT_S:g}s")
    await trio.to_thread.run_sync(_kill_now, run, step)
    return f"no acknowledgement within {ACK_TRIGGER_TIMEOUT_S:g}s"


async def _timeline(run: Run, equivocator: Account | None) -> None:
    """Run the steps at their times. An ``equivocate`` step waits for its payments' outcomes (up to
    the load timeout each), and an ``attack`` lasts its ``duration_s``, so they run beside the
    timeline: the steps after them keep their own times (a ``resume`` at 3 s must not wait for
    equivocations submitted at 2 s to time out)."""
    async with trio.open_nursery() as background:
        for step in run.scenario.steps:
            await trio.sleep_until(run.t0 + step.at_s)
            started = run.now()
            run.progress(f"t={started:6.1f}s  {step.describe()}")
            record: dict[str, Any] = {
                "at_s": step.at_s,
                "action": step.describe(),
                "started_s": round(started, 3),
            }
            run.timeline.append(record)
            if step.action in ("equivocate", "attack"):
                background.start_soon(_step_in_background, run, step, equivocator, record)
                continue
            if step.when == "next_ack":
                record["trigger"] = await _at_next_ack(run, step)
                run.progress(f"t={run.now():6.1f}s  killed: {record['trigger']}")
                record["started_s"] = round(run.now(), 3)
            else:
                await _step(run, step, equivocator)
            record["done_s"] = round(run.now(), 3)


async def _step_in_background(
    run: Run, step: Step, equivocator: Account | None, record: dict[str, Any]
) -> None:
    await _step(run, step, equivocator)
    record["done_s"] = round(run.now(), 3)


# -- memory -----------------------------------------------------------------------------------------------
def read_rss_kb(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB (psutil), or None if it cannot be read."""
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss // 1024)
    except psutil.Error:
        return None


async def _sampler(run: Run) -> None:
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


# -- quiescence -------------------------------------------------------------------------------------------
async def _quiesce(run: Run, names: list[str]) -> tuple[bool, float, dict[str, dict[str, Any] | None]]:
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


# -- the run ----------------------------------------------------------------------------------------------
async def run_scenario(
    scenario: Scenario,
    directory: Path,
    progress: Progress = _stderr,
    *,
    shielded: bool = True,
    zk: ZkPaths | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` in ``directory`` (created; must not hold a cluster) and return the report.
    ``shielded`` / ``zk``: whether the genesis carries the shielded pool, and where its keys are.

    Resource handling: every node process is stopped before this returns or raises, also on
    cancellation. Error handling: :class:`LocalError` / :class:`ConfigError` for setup failures (the
    nodes started so far are stopped); invariant violations are in the report, not raised.
    """
    directory = Path(directory).resolve()
    cluster = prepare(scenario, directory, shielded=shielded, zk=zk)
    testnet = cluster.cluster
    accounts = []
    for i, entry in enumerate(testnet.accounts):
        key = load_account(entry.path)
        accounts.append(Account(i, key, address_of(key.public)))
    run = Run(
        scenario=scenario,
        cluster=cluster,
        chain_id=testnet.chain_id,
        node_ids={n.name: bytes.fromhex(n.node_id) for n in testnet.nodes},
        accounts=accounts,
        progress=progress,
    )
    late = scenario.late_nodes
    run.state = {n: ("late" if n in late else "up") for n in cluster.names}
    equivocator = accounts[-1] if scenario.equivocations else None
    # The last account is reserved, kept out of the load, for the equivocating payer or for a role
    # that pays from it (``ACCOUNT_ROLES``: it signs with the cluster's last account file).
    reserved = equivocator or (accounts[-1] if set(scenario.roles.values()) & ACCOUNT_ROLES else None)
    payers = [a for a in accounts if a is not reserved]
    report: dict[str, Any] = {}
    wall_start = time.time()
    try:
        progress(f"scenario {scenario.name}: starting {len(cluster.names) - len(late)} nodes in {directory}")
        await trio.to_thread.run_sync(lambda: cluster.start(*(n for n in cluster.names if n not in late)))
        await _wait_up(run, [n for n in cluster.names if n not in late], _START_TIMEOUT_S)
        run.t0 = trio.current_time()
        run.t0_ns = time.time_ns()
        progress(f"t=   0.0s  cluster ready; load {scenario.load.rate:g}/s for {scenario.load.duration_s:g}s")
        async with trio.open_nursery() as outer:
            outer.start_soon(_sampler, run)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_load, run, payers)
                nursery.start_soon(_timeline, run, equivocator)
            load_done = run.now()
            progress(f"t={load_done:6.1f}s  load and timeline done; waiting for quiescence")
            honest_up = [n for n in cluster.names if run.honest(n) and run.state[n] == "up"]
            converged, quiesce_s, statuses = await _quiesce(run, honest_up)
            progress(
                f"t={run.now():6.1f}s  {'quiescent' if converged else 'NOT converged'} after {quiesce_s:.1f}s"
            )
            finals = None
            if scenario.expect.payers_can_pay:
                finals = await final_payments(run, payers)
                ok = sum(1 for o, _ in finals.values() if o == "settled")
                progress(
                    f"t={run.now():6.1f}s  final payments: {ok} of {len(finals)} payers settled one more"
                )
                converged, more_s, statuses = await _quiesce(run, honest_up)
                quiesce_s += more_s
            report = await collect(run, honest_up, statuses, converged, quiesce_s, finals)
            outer.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            stopped = await trio.to_thread.run_sync(cluster.stop)
        if report:
            report["teardown"] = {s.name: s.outcome for s in stopped}
    report["wall_s"] = round(time.time() - wall_start, 1)
    write_report(directory, report)
    return report


__all__ = ["run_scenario", "prepare", "render_report", "write_report", "exit_code", "read_rss_kb"]
