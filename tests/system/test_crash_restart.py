"""A validator is SIGKILLed in the middle of a payment stream and restarted: nothing acknowledged is lost
or applied twice, and every node ends on the same state root."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
import trio

from p2pnode.client import Client, NodeStatus, Wallet, pay
from p2pnode.testing import LocalCluster, open_local_cluster
from tests.system.conftest import log_events

pytestmark = pytest.mark.slow

ACCOUNTS = 8
PAYERS = 4
PER_PAYER = 15  # 60 payments in all
KILL_AFTER = 15  # acknowledged payments before the crash
RESTART_AFTER = 30  # ... before the restart
HOLD_AT = 45  # payers wait here until the restarted node is ready, so the last ones go through it too
VICTIM = "node-3"
PAY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Ack:
    payer: int
    payee: int
    amount: int
    seq: int
    node: str
    after_restart: bool


async def _stream(cluster: LocalCluster) -> tuple[list[Ack], list[str]]:
    keys = [a.key for a in cluster.accounts]
    addrs = [a.address for a in cluster.accounts]
    names = [n.name for n in cluster.nodes]
    acks: list[Ack] = []
    events: list[str] = []
    crashed = trio.Event()
    restarted = trio.Event()
    progress = trio.Condition()

    async def controller() -> None:
        async with progress:
            while len(acks) < KILL_AFTER:
                await progress.wait()
        (stopped,) = await trio.to_thread.run_sync(cluster.net.kill, VICTIM)
        assert stopped.outcome in ("stopped", "killed"), stopped
        events.append(f"killed {VICTIM} after {len(acks)} payments")
        crashed.set()
        async with progress:
            while len(acks) < RESTART_AFTER:
                await progress.wait()
        with trio.fail_after(60):
            await cluster.restart(VICTIM)
        events.append(f"restarted {VICTIM} after {len(acks)} payments")
        restarted.set()

    async def payer(i: int) -> None:
        clients: dict[str, Client] = {}
        last: bytes | None = None
        async with AsyncExitStack() as stack:
            for k in range(PER_PAYER):
                if len(acks) >= HOLD_AT:
                    await restarted.wait()
                # Clients never talk to the victim before its restart, so that every payment is either
                # acknowledged or a failure of the test, never lost with a dropped connection.
                pool = names if restarted.is_set() else [n for n in names if n != VICTIM]
                node = pool[(i + k) % len(pool)]
                client = clients.get(node)
                if client is None:
                    client = clients[node] = await stack.enter_async_context(cluster.client(node))
                if last is not None:  # the payer's next seq, read from this node, must count the last one
                    with trio.fail_after(PAY_TIMEOUT_S):
                        await client.wait_settled(last)
                payee = (i + 1 + k) % ACCOUNTS
                if payee == i:
                    payee = (payee + 1) % ACCOUNTS
                amount = 1000 + 37 * i + k
                with trio.fail_after(PAY_TIMEOUT_S):
                    result = await pay(client, Wallet.from_key(keys[i]), addrs[payee], amount)
                last = result.tx
                async with progress:
                    acks.append(Ack(i, payee, amount, result.seq, node, restarted.is_set()))
                    progress.notify_all()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(controller)
        for i in range(PAYERS):
            nursery.start_soon(payer, i)
    return acks, events


async def _accounts_at(cluster: LocalCluster, name: str) -> dict[bytes, tuple[int, int]]:
    out: dict[bytes, tuple[int, int]] = {}
    async with cluster.client(name) as client:
        for account in cluster.accounts:
            state = await client.account(account.address)
            out[account.address] = (state.balance, state.next_seq)
    return out


async def _converged(cluster: LocalCluster) -> dict[str, NodeStatus]:
    with trio.fail_after(30):
        await cluster.wait_converged()
    return {n.name: await cluster.status(n) for n in cluster.nodes}


async def test_validator_crash_and_restart_mid_stream() -> None:
    with trio.fail_after(600):
        async with open_local_cluster(validators=4, accounts=ACCOUNTS, faults=False) as cluster:
            await _crash_and_restart_mid_stream(cluster)


async def _crash_and_restart_mid_stream(cluster: LocalCluster) -> None:
    genesis = await _accounts_at(cluster, "node-0")
    assert all(seq == 0 for _, seq in genesis.values())

    acks, events = await _stream(cluster)
    assert len(acks) == PAYERS * PER_PAYER, events
    assert len(events) == 2, events
    # The stream really went on around the crash: payments settled while the victim was down, and the
    # restarted victim settled some itself.
    assert sum(1 for a in acks if not a.after_restart) > KILL_AFTER
    assert any(a.node == VICTIM for a in acks), Counter(a.node for a in acks)
    starts = [line for line in log_events(cluster.log_files()[VICTIM], "node_started")]
    assert len(starts) == 2, starts
    # Each payer's acknowledged seqs are 0, 1, 2, ... with no gap and no repeat.
    for i in range(PAYERS):
        assert [a.seq for a in acks if a.payer == i] == list(range(PER_PAYER))

    addrs = [a.address for a in cluster.accounts]
    sent: Counter[int] = Counter()
    received: Counter[int] = Counter()
    for a in acks:
        sent[a.payer] += a.amount
        received[a.payee] += a.amount
    expected = {
        addrs[j]: (genesis[addrs[j]][0] - sent[j] + received[j], sum(1 for a in acks if a.payer == j))
        for j in range(ACCOUNTS)
    }

    # Equal roots: every node holds the state of the node that acknowledged the last payment.
    statuses = await _converged(cluster)
    applied = {n: s.applied for n, s in statuses.items()}
    assert set(applied.values()) == {len(acks)}, f"applied counts {applied}, expected {len(acks)}"
    roots = {n: s.root for n, s in statuses.items()}
    assert len(set(roots.values())) == 1, roots

    for name in statuses:
        have = await _accounts_at(cluster, name)
        for j, addr in enumerate(addrs):
            assert have[addr] == expected[addr], (
                f"{name}: account-{j} has (balance, next_seq) {have[addr]}, expected {expected[addr]}"
            )
