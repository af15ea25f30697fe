"""A validator is SIGKILLed in the middle of a payment stream and restarted: nothing acknowledged is lost
or applied twice, and every node ends on the same state root."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
import trio

from p2pnode.client import Client, Wallet, load_account, pay
from p2pnode.crypto import address_of
from p2pnode.localnet import ClusterSpec, LocalNet
from p2pnode.wire.messages import AccountReply, GetAccount
from p2pnode.wire.types import Address
from tests.system.conftest import NetUp, log_events, wait_applied

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


async def _stream(cluster: LocalNet) -> tuple[list[Ack], list[str]]:
    keys = [load_account(a.path) for a in cluster.cluster.accounts]
    addrs = [address_of(k.public) for k in keys]
    names = cluster.names
    acks: list[Ack] = []
    events: list[str] = []
    crashed = trio.Event()
    restarted = trio.Event()
    progress = trio.Condition()

    async def controller() -> None:
        async with progress:
            while len(acks) < KILL_AFTER:
                await progress.wait()
        (stopped,) = await trio.to_thread.run_sync(cluster.kill, VICTIM)
        assert stopped.outcome in ("stopped", "killed"), stopped
        events.append(f"killed {VICTIM} after {len(acks)} payments")
        crashed.set()
        async with progress:
            while len(acks) < RESTART_AFTER:
                await progress.wait()
        cluster.start(VICTIM)
        with trio.fail_after(60):
            await cluster.wait_ready([VICTIM])
        events.append(f"restarted {VICTIM} after {len(acks)} payments")
        restarted.set()

    async def payer(i: int) -> None:
        clients: dict[str, Client] = {}
        last: bytes | None = None
        try:
            for k in range(PER_PAYER):
                if len(acks) >= HOLD_AT:
                    await restarted.wait()
                # Clients never talk to the victim before its restart, so that every payment is either
                # acknowledged or a failure of the test, never lost with a dropped connection.
                pool = names if restarted.is_set() else [n for n in names if n != VICTIM]
                node = pool[(i + k) % len(pool)]
                client = clients.get(node)
                if client is None:
                    entry = cluster.cluster.node(node)
                    client = clients[node] = await Client.connect(entry.host, entry.port)
                if last is not None:
                    await wait_applied(client, last, PAY_TIMEOUT_S)
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
        finally:
            for c in clients.values():
                await c.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(controller)
        for i in range(PAYERS):
            nursery.start_soon(payer, i)
    return acks, events


async def _accounts_at(cluster: LocalNet, name: str) -> dict[bytes, tuple[int, int]]:
    out: dict[bytes, tuple[int, int]] = {}
    async with cluster.client(name) as client:
        for account in cluster.cluster.accounts:
            addr = account.address
            reply = await client.call(GetAccount(address=Address(addr)))
            assert isinstance(reply, AccountReply)
            out[addr] = (reply.balance, reply.next_seq)
    return out


async def _converged(cluster: LocalNet) -> dict[str, dict[str, object]]:
    with trio.fail_after(30):
        await cluster.wait_converged()
    return {n: await cluster.status(n) for n in cluster.names}


def test_validator_crash_and_restart_mid_stream(net_up: NetUp) -> None:
    cluster = net_up(ClusterSpec(validators=4, accounts=ACCOUNTS, shielded=False))
    genesis = trio.run(_accounts_at, cluster, "node-0")
    assert all(seq == 0 for _, seq in genesis.values())

    acks, events = trio.run(_stream, cluster)
    assert len(acks) == PAYERS * PER_PAYER, events
    assert len(events) == 2, events
    # The stream really went on around the crash: payments settled while the victim was down, and the
    # restarted victim settled some itself.
    assert sum(1 for a in acks if not a.after_restart) > KILL_AFTER
    assert any(a.node == VICTIM for a in acks), Counter(a.node for a in acks)
    starts = [line for line in log_events(cluster.cluster.node(VICTIM).log, "node_started")]
    assert len(starts) == 2, starts
    # Each payer's acknowledged seqs are 0, 1, 2, ... with no gap and no repeat.
    for i in range(PAYERS):
        assert [a.seq for a in acks if a.payer == i] == list(range(PER_PAYER))

    addrs = [a.address for a in cluster.cluster.accounts]
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
    statuses = trio.run(_converged, cluster)
    applied = {n: s["applied"] for n, s in statuses.items()}
    assert set(applied.values()) == {len(acks)}, f"applied counts {applied}, expected {len(acks)}"
    roots = {n: s["root"] for n, s in statuses.items()}
    assert len(set(roots.values())) == 1, roots

    for name in cluster.names:
        have = trio.run(_accounts_at, cluster, name)
        for j, addr in enumerate(addrs):
            assert have[addr] == expected[addr], (
                f"{name}: account-{j} has (balance, next_seq) {have[addr]}, expected {expected[addr]}"
            )
