"""kill -9 soak: every validator SIGKILLed at once under payment load, restarted, checked; round after round.

Brings a local cluster up (:class:`p2pnode.localnet.LocalNet`, no shielded pool), then per round:

1. load: ``--payers`` payer tasks, each the owner of one funded account, pay in a closed loop through
   random nodes (one payment in flight per payer; :meth:`p2pnode.client.Client.wait_settled` at the
   submitting node is the acknowledgement);
2. crash: at a random instant of the round's load, or (about half of the rounds) the instant a node
   acknowledges a payment as settled, every validator is SIGKILLed at once; so is the acknowledging
   node when it is a full node, so that the acknowledgement it gave is put to the test;
3. restart: the killed nodes are started again on the same directory (``LocalNet.start`` and
   ``wait_ready``, what ``net up --dir`` does);
4. checks, once the cluster is quiet:

   - *frozen*: every payer first settles the order it had in flight (the SAME order, same bytes: a
     payer never signs a second order for a seq whose outcome it does not know), then one new payment;
     each within ``--settle-timeout``. A payer that cannot is frozen, unless a node reports its slot
     as blocked by conflicting orders (this load never equivocates, so expect none of those either);
   - *lost*: every payment acknowledged in the round is settled on every node (``Client.settled``:
     the node's durable answer, no waiting);
   - *roots*: every node reports the same state root;
   - *supply*: on every node the funded accounts' balances sum to the genesis total (every payment
     goes between them), and every node reports the same (balance, next seq) for each account.

One line per round, then a summary (``--json``: the summary and the rounds as JSON on stdout, the
round lines on stderr). Exit 0 when no round found a violation, 1 otherwise, 2 when the cluster could
not be started, 130 when SIGINT or SIGTERM ended the run early (the summary covers the rounds done).
Every wait is bounded; the cluster is torn down (SIGTERM, then SIGKILL, by recorded pid) at the end,
also on a failure or Ctrl-C. Without ``--dir`` the cluster lives in a temporary directory, removed
after a passing run and kept (its path printed) after a failing one.

A payer keeps its one order of unknown outcome itself (``Payer.pending``) rather than in a
:class:`p2pnode.client.Wallet`: the soak must see the acknowledgement of exactly that order the
instant it arrives (the at-ack kill fires from it), and it never pays anything else for that seq.

    python scripts/soak_kill9.py [--rounds 30] [--validators 4] [--full-nodes 1] [--accounts 8]
                                 [--payers 4] [--dir DIR] [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from p2pnode.client import AccountState, Client, NodeStatus, PaymentRefused, SlotBlocked, load_account
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import SpendingKey
from p2pnode.errors import LocalError, P2PNodeError
from p2pnode.localnet import ClusterSpec, LocalNet, write_cluster
from p2pnode.wire.messages import Order

PAY_TIMEOUT_S = 5.0  # one attempt: submit until settled at that node
REQUEST_TIMEOUT_S = 5.0
ACK_WAIT_S = 10.0  # an armed at-ack kill fires at random if no acknowledgement comes in this long
READY_TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 60.0
STUCK_POLLS = 16  # 4 s of polls with nothing moving
NET_ERRORS = (OSError, P2PNodeError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass
class Payer:
    index: int
    key: SpendingKey
    address: bytes
    next_seq: int = 0
    pending: Order | None = None  # built, maybe submitted, outcome unknown: resubmitted as it is
    frozen_since: int = 0  # round of the first failed settle probe (0 = not frozen)


@dataclass(frozen=True, slots=True)
class Ack:
    tx: str
    payer: int
    seq: int
    node: str
    round: int


@dataclass
class Round:
    round: int
    kill_mode: str = ""  # random | at-ack | at-ack-timeout
    kill_at_s: float = 0.0
    killed: list[str] = field(default_factory=list)
    kill_ack: str = ""  # "<node> <tx16>" of the acknowledgement that triggered the kill
    acked: int = 0  # acknowledged in this round (load and probe)
    in_doubt: int = 0  # payers with an order of unknown outcome right after the kill
    refusals: dict[str, int] = field(default_factory=dict)
    restart_s: float = 0.0
    restart_error: str = ""
    quiet_s: float = 0.0
    converged: bool = False
    frozen: list[str] = field(default_factory=list)  # "payer-i: reason"
    blocked: list[str] = field(default_factory=list)  # slots the nodes report as equivocated
    lost: list[str] = field(default_factory=list)  # "tx16 at node,node"
    supply: list[str] = field(default_factory=list)  # "node: sum" where the sum is not the genesis total
    accounts_differ: list[str] = field(default_factory=list)  # "account-i: node=balance/seq ..."
    crashed: list[str] = field(default_factory=list)  # nodes not killed here that are not running
    roots_equal: bool = False
    roots: dict[str, str | None] = field(default_factory=dict)
    applied: dict[str, int | None] = field(default_factory=dict)
    seconds: float = 0.0

    def _roots_text(self) -> str:
        return _groups_text(self.roots, self.applied)

    @property
    def ok(self) -> bool:
        bad = self.frozen or self.lost or self.crashed or self.restart_error or self.supply
        return not bad and self.roots_equal

    def line(self, total: int) -> str:
        kill = f"kill {self.kill_mode:14} at {self.kill_at_s:4.1f}s"
        if self.kill_ack:
            kill += f" ({self.kill_ack})"
        parts = [
            f"round {self.round:3}/{total}",
            kill,
            f"acked {self.acked:4}",
            f"in-doubt {self.in_doubt}",
            f"restart {self.restart_s:4.1f}s"
            + (f" FAILED: {self.restart_error}" if self.restart_error else ""),
            f"quiet {self.quiet_s:4.1f}s" + ("" if self.converged else " (NOT converged)"),
            f"lost {len(self.lost)}" + (f" [{'; '.join(self.lost[:3])}]" if self.lost else ""),
            f"frozen {len(self.frozen)}" + (f" [{'; '.join(self.frozen)}]" if self.frozen else ""),
            "roots equal" if self.roots_equal else f"ROOTS DIFFER [{self._roots_text()}]",
            "supply ok" if not self.supply else f"SUPPLY [{'; '.join(self.supply)}]",
            f"{self.seconds:5.1f}s",
        ]
        if self.blocked:
            parts.insert(-2, f"blocked {len(self.blocked)}")
        if self.accounts_differ:
            parts.insert(-1, f"accounts differ [{'; '.join(self.accounts_differ[:3])}]")
        if self.crashed:
            parts.insert(-1, f"CRASHED {','.join(self.crashed)}")
        return "  ".join(parts)


def _groups_text(roots: dict[str, str | None], applied: dict[str, int | None]) -> str:
    groups: dict[str, list[str]] = {}
    for name, root in roots.items():
        groups.setdefault(str(root)[:12], []).append(f"{name}:{applied.get(name)}")
    return "; ".join(f"{r} at {','.join(ns)}" for r, ns in groups.items())


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


class Soak:
    """The cluster, the payers and the records of a soak run (all on one Trio thread)."""

    def __init__(self, net: LocalNet, args: argparse.Namespace, rng: random.Random) -> None:
        self.net = net
        self.args = args
        self.rng = rng
        self.chain_id = net.cluster.chain_id
        self.names = net.names
        self.validators = [n.name for n in net.cluster.nodes if n.role == "validator"]
        self.addrs = {n.name: (n.host, n.port) for n in net.cluster.nodes}
        keys = [load_account(a.path) for a in net.cluster.accounts]
        self.accounts = [a.address for a in net.cluster.accounts]
        self.payers = [Payer(i, keys[i], self.accounts[i]) for i in range(args.payers)]
        self.acks: list[Ack] = []
        self.down: set[str] = set()
        self.on_ack: Callable[[Ack], None] | None = None
        self.total = 0  # genesis supply of the funded accounts, read before the first round

    # -- payments ---------------------------------------------------------------------------------------
    def _order_for(self, payer: Payer) -> Order:
        """The payer's pending order, or a new one for its next seq (kept until it is acknowledged)."""
        if payer.pending is None:
            seq = payer.next_seq
            payees = [a for a in self.accounts if a != payer.address]
            payer.pending = make_order(payer.key, self.chain_id, payees[seq % len(payees)], 1 + seq % 7, seq)
        return payer.pending

    def _acknowledged(self, payer: Payer, order: Order, node: str, rnd: Round) -> None:
        if payer.pending is not order:
            return
        ack = Ack(transfer_digest(order.transfer).hex(), payer.index, order.transfer.seq, node, rnd.round)
        self.acks.append(ack)
        rnd.acked += 1
        payer.pending = None
        payer.next_seq = order.transfer.seq + 1
        hook = self.on_ack
        if hook is not None:
            hook(ack)  # synchronously: nothing else runs between the acknowledgement and the hook

    async def _attempt(self, payer: Payer, node: str, rnd: Round, timeout: float) -> str:
        """Submit the payer's order at ``node`` and wait until it settles there. Returns "" when it was
        acknowledged, else the reason it was not (the order stays pending)."""
        order = self._order_for(payer)
        digest = transfer_digest(order.transfer)
        host, port = self.addrs[node]
        try:
            with trio.fail_after(timeout):
                async with await Client.connect(host, port) as client:
                    try:
                        await client.submit(order)
                        await client.wait_settled(digest)
                    except PaymentRefused as exc:
                        # A resubmission of an order that settled while its outcome was unknown to us is
                        # refused as stale: the node's durable answer for the digest decides.
                        if await client.settled(digest) is None:
                            return self._refused(rnd, f"refused: {exc}")
                    except SlotBlocked as exc:  # cannot settle; the probe reports the slot
                        return self._refused(rnd, f"blocked: {exc.facts.get('blocked') or exc}")
                    self._acknowledged(payer, order, node, rnd)
                    return ""
        except trio.TooSlowError:
            return f"not settled at {node} within {timeout:g}s"
        except NET_ERRORS as exc:
            return _short(f"{node}: {str(exc) or type(exc).__name__}")

    @staticmethod
    def _refused(rnd: Round, text: str) -> str:
        reason = _short(text)
        rnd.refusals[reason] = rnd.refusals.get(reason, 0) + 1
        return reason

    async def _payer_loop(self, payer: Payer, rnd: Round) -> None:
        while True:
            up = [n for n in self.names if n not in self.down]
            if not up:
                await trio.sleep(0.1)
                continue
            reason = await self._attempt(payer, self.rng.choice(up), rnd, PAY_TIMEOUT_S)
            await trio.sleep(0.2 if reason else self.rng.uniform(0.0, 0.02))

    # -- crash and restart ----------------------------------------------------------------------------
    def _kill_now(self, rnd: Round, start: float, ack: Ack | None) -> None:
        """SIGKILL every validator (and the acknowledging node), synchronously."""
        victims = list(self.validators)
        if ack is not None and ack.node not in victims:
            victims.append(ack.node)
        self.net.kill(*victims)  # every signal before the first wait
        self.down.update(victims)
        rnd.killed = victims
        rnd.kill_at_s = round(trio.current_time() - start, 3)
        if ack is not None:
            rnd.kill_ack = f"{ack.node} acked {ack.tx[:12]}"

    async def _killer(self, rnd: Round, start: float, done: trio.Event) -> None:
        load_s = self.args.load_s
        if self.rng.random() < 0.5:
            rnd.kill_mode = "random"
            await trio.sleep(self.rng.uniform(0.3, load_s))
            self._kill_now(rnd, start, None)
        else:
            rnd.kill_mode = "at-ack"
            await trio.sleep(self.rng.uniform(0.3, load_s * 0.8))
            fired = trio.Event()

            def hook(ack: Ack) -> None:
                self.on_ack = None
                self._kill_now(rnd, start, ack)
                fired.set()

            self.on_ack = hook
            with trio.move_on_after(ACK_WAIT_S):
                await fired.wait()
            if not fired.is_set():
                self.on_ack = None
                rnd.kill_mode = "at-ack-timeout"
                self._kill_now(rnd, start, None)
        done.set()

    async def _restart(self, names: list[str]) -> None:
        """Start ``names`` again and wait until they are ready; ClusterError (with log tails) if one
        exits or ``READY_TIMEOUT_S`` passes."""
        await trio.to_thread.run_sync(lambda: self.net.start(*names))
        try:
            with trio.fail_after(READY_TIMEOUT_S):
                await self.net.wait_ready(names)
        except trio.TooSlowError:
            raise self.net.failure(names, f"not ready within {READY_TIMEOUT_S:g}s") from None

    # -- checks -----------------------------------------------------------------------------------------
    async def _status(self, name: str) -> NodeStatus | None:
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                async with self.net.client(name) as client:
                    return await client.status()
        except NET_ERRORS:
            return None

    async def _quiet(self, timeout: float) -> tuple[bool, float, dict[str, NodeStatus | None]]:
        """Until every node reports one root with applied counts unchanged over two polls, or the counts
        stop moving for ``STUCK_POLLS`` polls with roots that differ (nothing will change any more), or
        ``timeout`` passes."""
        start = trio.current_time()
        prev: dict[str, tuple[Any, Any]] | None = None
        same = 0
        statuses: dict[str, NodeStatus | None] = {}
        while True:
            statuses = {n: await self._status(n) for n in self.names}
            sig = {n: (s.applied, s.root or None) if s else (None, None) for n, s in statuses.items()}
            same = same + 1 if sig == prev else 0
            prev = sig
            roots = {r for _, r in sig.values()}
            converged = None not in roots and len(roots) == 1
            stuck = same >= STUCK_POLLS and None not in roots
            if (converged and same >= 2) or stuck or trio.current_time() - start >= timeout:
                return converged, trio.current_time() - start, statuses
            await trio.sleep(0.25)

    async def _blocked_reason(self, payer: Payer) -> str:
        for name in self.names:
            try:
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    async with self.net.client(name) as client:
                        acct: AccountState = await client.account(payer.address)
            except NET_ERRORS:
                continue
            if acct.blocked:
                return acct.blocked
        return ""

    async def _probe(self, payer: Payer, rnd: Round) -> None:
        """Settle the pending order (if any), then one new payment, within ``--settle-timeout``."""
        bound = self.args.settle_timeout
        target = 2 if payer.pending is not None else 1  # the order in doubt first, then a new one
        settled = 0
        reason = ""
        turn = self.rng.randrange(len(self.names))
        with trio.move_on_after(bound):
            while settled < target:
                node = self.names[turn % len(self.names)]
                turn += 1
                reason = await self._attempt(payer, node, rnd, min(PAY_TIMEOUT_S, bound))
                if reason:
                    await trio.sleep(0.2)
                else:
                    settled += 1
        if settled >= target:
            payer.frozen_since = 0
            return
        seq = payer.pending.transfer.seq if payer.pending is not None else payer.next_seq
        blocked = await self._blocked_reason(payer)
        if blocked:
            rnd.blocked.append(f"payer-{payer.index} seq {seq}: {_short(blocked, 80)}")
            return
        payer.frozen_since = payer.frozen_since or rnd.round
        since = f" since round {payer.frozen_since}" if payer.frozen_since != rnd.round else ""
        rnd.frozen.append(f"payer-{payer.index} seq {seq}{since}: {_short(reason or 'no reply', 100)}")

    async def balances(self, name: str) -> list[tuple[int, int]] | None:
        """(balance, next seq) of every funded account at ``name``; None if it does not answer."""
        out: list[tuple[int, int]] = []
        try:
            with trio.fail_after(CHECK_TIMEOUT_S):
                async with self.net.client(name) as client:
                    for addr in self.accounts:
                        acct = await client.account(addr)
                        out.append((acct.balance, acct.next_seq))
        except NET_ERRORS:
            return None
        return out

    async def _check_accounts(self, rnd: Round) -> None:
        views = {n: await self.balances(n) for n in self.names}
        for name, view in views.items():
            total = sum(b for b, _ in view) if view is not None else None
            if total != self.total:
                rnd.supply.append(f"{name}: {total if total is not None else 'no answer'} != {self.total}")
        for i in range(len(self.accounts)):
            seen = {n: v[i] for n, v in views.items() if v is not None}
            if len(set(seen.values())) > 1:
                text = " ".join(f"{n}={b}/{q}" for n, (b, q) in seen.items())
                rnd.accounts_differ.append(f"account-{i}: {text}")

    async def _settled_at(self, name: str, txs: list[str]) -> set[str] | None:
        """The digests of ``txs`` that ``name`` has applied durably; None if it does not answer."""
        have: set[str] = set()
        try:
            with trio.fail_after(CHECK_TIMEOUT_S):
                async with self.net.client(name) as client:
                    for tx in txs:
                        try:
                            if await client.settled(bytes.fromhex(tx)) is not None:
                                have.add(tx)
                        except SlotBlocked:
                            pass  # a node that calls it blocked has not applied it: it counts as lost
        except NET_ERRORS:
            return None
        return have

    async def lost(self, acks: list[Ack]) -> list[str]:
        """Acknowledged payments missing on some node: "tx16 at node,node" (node ``?`` = no answer)."""
        txs = [a.tx for a in acks]
        missing: dict[str, list[str]] = {}
        for name in self.names:
            have = await self._settled_at(name, txs)
            for tx in txs:
                if have is None or tx not in have:
                    missing.setdefault(tx, []).append(name + ("?" if have is None else ""))
        return [f"{tx[:16]} at {','.join(nodes)}" for tx, nodes in missing.items()]

    # -- one round --------------------------------------------------------------------------------------
    async def round(self, number: int) -> Round:
        rnd = Round(number)
        start = trio.current_time()
        first_ack = len(self.acks)
        killed = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._killer, rnd, start, killed)
            async with trio.open_nursery() as load:
                for payer in self.payers:
                    load.start_soon(self._payer_loop, payer, rnd)
                await killed.wait()
                load.cancel_scope.cancel()
        rnd.in_doubt = sum(1 for p in self.payers if p.pending is not None)
        t = trio.current_time()
        try:
            await self._restart(rnd.killed)
            self.down.clear()
        except LocalError as exc:
            rnd.restart_error = _short(str(exc).splitlines()[0], 160)
        rnd.restart_s = round(trio.current_time() - t, 2)
        running = await trio.to_thread.run_sync(self.net.running)
        rnd.crashed = [n for n in self.names if n not in running and n not in self.down]
        if not rnd.restart_error:
            await self._quiet(self.args.quiet_timeout)
            async with trio.open_nursery() as nursery:
                for payer in self.payers:
                    nursery.start_soon(self._probe, payer, rnd)
            rnd.converged, rnd.quiet_s, statuses = await self._quiet(self.args.quiet_timeout)
            rnd.roots = {n: s.root if s is not None else None for n, s in statuses.items()}
            rnd.applied = {n: s.applied if s is not None else None for n, s in statuses.items()}
            rnd.roots_equal = rnd.converged
            rnd.lost = await self.lost(self.acks[first_ack:])
            await self._check_accounts(rnd)
        rnd.seconds = round(trio.current_time() - start, 2)
        return rnd


def _make_net(args: argparse.Namespace, directory: Path) -> LocalNet:
    spec = ClusterSpec(
        validators=args.validators, full_nodes=args.full_nodes, accounts=args.accounts, shielded=False
    )
    return LocalNet(write_cluster(spec, directory))


async def _start(net: LocalNet) -> None:
    """Start every node and wait until all are ready (ClusterError with log tails if not)."""
    net.start()
    try:
        with trio.fail_after(READY_TIMEOUT_S):
            await net.wait_ready()
    except trio.TooSlowError:
        raise net.failure(net.names, f"not ready within {READY_TIMEOUT_S:g}s") from None


async def soak(net: LocalNet, args: argparse.Namespace, emit: Callable[[str], None]) -> dict[str, Any]:
    rng = random.Random(args.seed)
    wall = time.monotonic()
    s = Soak(net, args, rng)
    genesis = await s.balances(s.names[0])
    if genesis is None:
        raise LocalError(f"{s.names[0]}: no account replies before the first round")
    s.total = sum(b for b, _ in genesis)
    rounds: list[Round] = []
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                nonlocal interrupted
                async for signum in signals:
                    emit(f"soak: {signal.Signals(signum).name}: stopping after {len(rounds)} rounds")
                    interrupted = True
                    nursery.cancel_scope.cancel()

            nursery.start_soon(on_signal)
            for i in range(1, args.rounds + 1):
                rnd = await s.round(i)
                rounds.append(rnd)
                emit(rnd.line(args.rounds))
                if rnd.restart_error:
                    break  # a node that cannot come back ends the soak: later rounds would measure nothing
            nursery.cancel_scope.cancel()
    final_lost = [] if interrupted or (rounds and rounds[-1].restart_error) else await s.lost(s.acks)
    frozen_payers = sorted({f.split(" ")[0] for r in rounds for f in r.frozen})
    summary = {
        "rounds": len(rounds),
        "acknowledged": len(s.acks),
        "lost": len({x.split(" ")[0] for r in rounds for x in r.lost}),
        "lost_at_end": len(final_lost),
        "frozen_payers": len(frozen_payers),
        "frozen_payer_rounds": sum(len(r.frozen) for r in rounds),
        "rounds_with_frozen": sum(1 for r in rounds if r.frozen),
        "blocked_slots": sum(len(r.blocked) for r in rounds),
        "rounds_unequal_roots": sum(1 for r in rounds if not r.roots_equal),
        "rounds_supply_broken": sum(1 for r in rounds if r.supply),
        "restart_failures": sum(1 for r in rounds if r.restart_error),
        "crashed": sorted({n for r in rounds for n in r.crashed}),
        "kill_modes": dict(Counter(r.kill_mode for r in rounds)),
        "refusals": dict(sum((Counter(r.refusals) for r in rounds), Counter()).most_common(8)),
        "wall_s": round(time.monotonic() - wall, 1),
        "seed": args.seed,
        "interrupted": interrupted,
    }
    summary["passed"] = (
        not interrupted
        and len(rounds) == args.rounds
        and all(r.ok for r in rounds)
        and not final_lost
        and not summary["crashed"]
    )
    return {"summary": summary, "rounds": [asdict(r) for r in rounds], "lost_at_end": final_lost}


def _render_summary(doc: dict[str, Any]) -> list[str]:
    s = doc["summary"]
    lines = [
        f"rounds {s['rounds']}  acknowledged {s['acknowledged']}"
        f"  lost {s['lost']} (at the end {s['lost_at_end']})"
        f"  frozen payers {s['frozen_payers']} ({s['rounds_with_frozen']} rounds)"
        f"  rounds with unequal roots {s['rounds_unequal_roots']}"
        f"  with supply broken {s['rounds_supply_broken']}"
        f"  restart failures {s['restart_failures']}"
        f"  wall {s['wall_s']}s  seed {s['seed']}",
        f"kill modes {s['kill_modes']}",
    ]
    for reason, count in s["refusals"].items():
        lines.append(f"  refused x{count}: {reason}")
    lines.append("INTERRUPTED" if s["interrupted"] else "PASSED" if s["passed"] else "VIOLATION")
    return lines


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # before the rounds start (cluster start-up): the same teardown as Ctrl-C


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="crash rounds (default 30)")
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--full-nodes", type=int, default=1)
    ap.add_argument("--accounts", type=int, default=8, help="funded accounts (default 8)")
    ap.add_argument("--payers", type=int, default=4, help="payer tasks, one account each (default 4)")
    ap.add_argument("--dir", type=Path, help="cluster directory to create (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory after a passing run")
    ap.add_argument("--seed", type=int, help="random seed (default: chosen and printed)")
    ap.add_argument("--load-s", type=float, default=4.0, help="seconds of load in which the kill falls")
    ap.add_argument(
        "--settle-timeout", type=float, default=20.0, help="bound for a payer's probe payments (default 20)"
    )
    ap.add_argument("--quiet-timeout", type=float, default=30.0, help="bound for quiescence (default 30)")
    ap.add_argument("--json", action="store_true", help="summary and rounds as JSON on stdout")
    args = ap.parse_args()
    if not 1 <= args.payers <= args.accounts - 1:
        ap.error("--payers must be between 1 and --accounts - 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)

    def emit(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    temporary = args.dir is None
    directory = Path(tempfile.mkdtemp(prefix="p2pnode-soak-")) if temporary else args.dir.resolve()
    signal.signal(signal.SIGTERM, _on_sigterm)
    net: LocalNet | None = None
    doc: dict[str, Any] | None = None
    try:
        try:
            net = _make_net(args, directory)
            emit(f"soak: {args.rounds} rounds, cluster in {directory}, seed {args.seed}")
            trio.run(_start, net)
        except LocalError as exc:
            print(f"soak: cluster did not start: {exc}", file=sys.stderr)
            return 2
        doc = trio.run(soak, net, args, emit)
    finally:
        if net is not None:
            try:
                net.stop()
            except LocalError as exc:
                print(f"soak: teardown: {exc}", file=sys.stderr)
        passed = doc is not None and doc["summary"]["passed"]
        if temporary and passed and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"soak: cluster directory kept: {directory}", file=sys.stderr)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        for line in _render_summary(doc):
            print(line)
    if doc["summary"]["interrupted"]:
        return 130
    return 0 if doc["summary"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
