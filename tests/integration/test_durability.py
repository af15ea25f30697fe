"""Acknowledged means durable, and a crash never freezes an account.

- A crash image taken at the very instant a client is told "settled" (or shown a new balance or
  root) holds that certificate: the real SQLite store, with commits made slow, is copied file by
  file at the acknowledgement and reloaded.
- Orders caught mid-quorum (some validators locked and voted, no certificate yet) settle after every
  validator restarts, or only some: a restarted validator votes again for the order it is locked on.
- Conflicting orders that split the votes are named at once: the slot is blocked, the payer's wait
  ends with the reason, the account query says so, and a new order for that seq is refused.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from p2pnode.core.ledger import Ledger
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.store import SqliteStore
from p2pnode.store.sqlite import Write
from p2pnode.testing import MemoryCluster, open_memory_cluster, planned
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    Order,
    SettledReply,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    SubmitReply,
    WaitSettled,
)
from p2pnode.wire.types import Address, Digest

COMMIT_DELAY_S = 0.15
BALANCE = 1_000_000


class SlowStore(SqliteStore):
    """The real store on a slow disk: every commit takes COMMIT_DELAY_S longer (on the store thread)."""

    def commit(self, writes: Sequence[Write]) -> None:
        time.sleep(COMMIT_DELAY_S)
        super().commit(writes)


def crash_image(db: Path, dest: Path) -> Path:
    """Copy the database files as a power cut would leave them (the main file, then the WAL)."""
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        src = Path(f"{db}{suffix}")
        if src.exists():
            shutil.copyfile(src, dest / f"node.sqlite{suffix}")
    return dest / "node.sqlite"


def image_state(path: Path, genesis_balances: dict[bytes, int]) -> tuple[set[bytes], bytes, dict[bytes, int]]:
    """(certificate digests, state root, balances) of a crash image, read back by a fresh process."""
    db = sqlite3.connect(path)
    digests = {bytes(d) for (d,) in db.execute("SELECT digest FROM certificates")}
    chain = bytes(db.execute("SELECT value FROM meta WHERE key = 'chain_id'").fetchone()[0])
    db.close()
    store = SqliteStore(path, chain)
    snap = store.load()
    store.close()
    ledger = Ledger(genesis_balances)
    merged = {a: (b, 0) for a, b in genesis_balances.items()}
    merged.update(snap.accounts)
    ledger.restore(merged, {}, snap.notes)
    return digests, ledger.root(), {a: b for a, (b, _) in merged.items()}


async def test_crash_image_at_acknowledgement_holds_what_was_acknowledged(tmp_path: Path) -> None:
    """Real clock: commits on node 0 run on its store thread and take COMMIT_DELAY_S each. A client
    polls node 0 without waiting; at the first answer that shows a payment (settled, new balance,
    new root) the database files are copied, and the copy must hold it."""
    dbs = [tmp_path / f"n{i}" / "node.sqlite" for i in range(4)]
    chain_id, _ = planned(validators=4, accounts=4, seed=1, balance=BALANCE)
    async with open_memory_cluster(
        validators=4,
        accounts=4,
        seed=1,
        balance=BALANCE,
        bootstrap_all=False,
        stores=lambda i: (SlowStore if i == 0 else SqliteStore)(dbs[i], chain_id),
        store_thread=True,
    ) as c:
        await c.wait_ready(peers=3)
        genesis = {bytes(a): b for a, b in c.genesis.balances}
        payer = c.account(1).address
        with trio.fail_after(60):
            for k in range(3):
                order = make_order(c.account(1).key, c.chain_id, c.account(2).address, 10 + k, k)
                digest = transfer_digest(order.transfer)
                before = await _account(c, 0, payer)
                status0 = await _status(c, 0)
                reply = await c.call(2, SubmitOrder(order=order))  # entered elsewhere: node 0 only applies
                assert isinstance(reply, SubmitReply) and reply.accepted, reply
                async with c.client(0) as client:
                    polls = 0
                    while True:
                        polls += 1
                        settled = await client.call(WaitSettled(digest=digest, wait_ms=0))
                        acct = await client.call(GetAccount(address=Address(payer)))
                        status = await client.call(StatusRequest(pad=bytes(4096)))
                        assert isinstance(settled, SettledReply) and isinstance(acct, AccountReply)
                        assert isinstance(status, StatusReply)
                        shows = (
                            settled.settled
                            or acct.balance != before.balance
                            or status.info["root"] != status0.info["root"]
                        )
                        if not shows:
                            await trio.sleep(0.002)
                            continue
                        image = crash_image(dbs[0], tmp_path / f"image-{k}")
                        digests, root, balances = image_state(image, genesis)
                        # Everything an answer showed was on disk when it was given.
                        assert digest in digests, f"acknowledged {digest.hex()[:16]} missing from the image"
                        if settled.settled:
                            assert settled.root == root
                        if acct.balance != before.balance:
                            assert balances[payer] == acct.balance
                        if status.info["root"] != status0.info["root"]:
                            assert status.info["root"] == root.hex()
                        break
                assert polls > 1, "the first poll already showed the payment: the window was not observed"


async def _account(c: MemoryCluster, node: int, addr: bytes) -> AccountReply:
    reply = await c.call(node, GetAccount(address=Address(addr)))
    assert isinstance(reply, AccountReply)
    return reply


async def _status(c: MemoryCluster, node: int) -> StatusReply:
    reply = await c.call(node, StatusRequest(pad=bytes(4096)))
    assert isinstance(reply, StatusReply)
    return reply


# == restarts mid-quorum ============================================================================
async def _wait_locked(c: MemoryCluster, nodes: Sequence[int], digests: Sequence[Digest]) -> None:
    """Until every one of ``nodes`` (validators) holds a durable lock and its vote for each digest."""
    while True:
        if all(
            d in c.driver(i).core.validator.durable  # type: ignore[union-attr]
            for i in nodes
            for d in digests
        ):
            return
        await trio.sleep(0.01)


def _payee(c: MemoryCluster, payer: int) -> bytes:
    return c.account((payer + 1) % len(c.accounts)).address


def _orders(c: MemoryCluster, payers: Sequence[int], seq: int = 0, amount: int = 7) -> list[Order]:
    return [make_order(c.account(p).key, c.chain_id, _payee(c, p), amount, seq) for p in payers]


async def _settled_everywhere(c: MemoryCluster, digests: Sequence[Digest], nodes: Sequence[int]) -> None:
    for i in nodes:
        for d in digests:
            reply = await c.call(i, WaitSettled(digest=d, wait_ms=30_000))
            assert isinstance(reply, SettledReply) and reply.settled, f"node {i}: {d.hex()[:16]} {reply}"


@pytest.mark.parametrize(
    ("restart", "down"),
    [
        pytest.param((0, 1, 2, 3), (), id="every-validator"),
        pytest.param((0, 1), (), id="only-the-voters"),
        pytest.param((0, 1), (3,), id="voters-while-another-validator-is-down"),
    ],
)
async def test_orders_mid_quorum_settle_after_validators_restart(
    restart: tuple[int, ...], down: tuple[int, ...], autojump_clock: trio.abc.Clock
) -> None:
    """Validators 0 and 1 lock and vote for three orders that validators 2 and 3 never see (no
    quorum: 2 of 3). Then validators restart (all of them, or only some) and the partition heals:
    every order settles on every node, and each payer can pay again (no frozen account)."""
    async with open_memory_cluster(
        validators=4, accounts=4, seed=1, balance=BALANCE, bootstrap_all=True
    ) as c:
        await c.wait_ready(peers=3)
        for i in down:
            await c.kill(i)
        await c.partition((0, 1), (2, 3))
        orders = _orders(c, payers=(0, 1, 2))
        digests = [transfer_digest(o.transfer) for o in orders]
        for order in orders:
            reply = await c.call(0, SubmitOrder(order=order))
            assert isinstance(reply, SubmitReply) and reply.accepted, reply
        await _wait_locked(c, (0, 1), digests)
        await trio.sleep(2)  # a few sync periods: still no certificate anywhere
        assert not any(d in c.driver(n).core.settled for n in c.nodes for d in digests)
        for i in restart:
            await c.kill(i)
        await c.heal()
        for i in restart:  # all at once: none waits for peers that are still down
            await c.start(i)
        up = [i for i in range(4) if i not in down]
        with trio.fail_after(60):
            await _settled_everywhere(c, digests, up)
            for p in (0, 1, 2):
                again = _orders(c, payers=(p,), seq=1, amount=3)[0]
                reply = await c.call(3 if 3 in up else 2, SubmitOrder(order=again))
                assert isinstance(reply, SubmitReply) and reply.accepted, reply
                await _settled_everywhere(c, [transfer_digest(again.transfer)], up)
            await c.wait_converged(nodes=up, applied=6)
        for p in (0, 1, 2):
            acct = await _account(c, up[-1], c.account(p).address)
            assert acct.next_seq == 2 and not acct.blocked


# == blocked slots ==================================================================================
async def test_conflicting_orders_that_split_the_votes_are_named_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A payer signs two orders for one seq and hands them to the two halves of a partitioned
    committee: 2 + 2 votes, quorum 3. After the heal every node records the slot as blocked, the
    payer's wait ends at once with the reason, and a third order for that seq is refused."""
    async with open_memory_cluster(
        validators=4, accounts=4, seed=1, balance=BALANCE, bootstrap_all=True
    ) as c:
        await c.wait_ready(peers=3)
        await c.partition((0, 1), (2, 3))
        order_a, order_b = _orders(c, (0,), amount=5)[0], _orders(c, (0,), amount=6)[0]
        a, b = transfer_digest(order_a.transfer), transfer_digest(order_b.transfer)
        for node, order in ((0, order_a), (2, order_b)):
            reply = await c.call(node, SubmitOrder(order=order))
            assert isinstance(reply, SubmitReply) and reply.accepted, reply
        await _wait_locked(c, (0, 1), [a])
        await _wait_locked(c, (2, 3), [b])
        await c.heal()
        payer = c.account(0).address
        slot = (payer, 0)
        with trio.fail_after(30):
            while not all(slot in c.driver(n).core.slots.blocked for n in c.nodes):
                await trio.sleep(0.05)
        start = trio.current_time()
        waited = await c.call(1, WaitSettled(digest=a, wait_ms=30_000))
        assert isinstance(waited, SettledReply)
        assert not waited.settled and waited.blocked.startswith("blocked:"), waited
        assert trio.current_time() - start < 0.5, "a blocked payment must be answered at once"
        assert "2 votes" in waited.blocked and payer.hex() in waited.blocked
        acct = await _account(c, 3, payer)
        assert acct.blocked.startswith("blocked:") and acct.next_seq == 0 and acct.balance == BALANCE
        order_c = _orders(c, (0,), amount=9)[0]
        refused = await c.call(2, SubmitOrder(order=order_c))
        assert isinstance(refused, SubmitReply) and not refused.accepted
        assert refused.error.startswith("blocked:")
        status = await _status(c, 0)
        (record,) = status.info["blocked_slots"]
        assert record["sender"] == payer.hex() and record["seq"] == 0
        assert sorted(record["orders"].values()) == [2, 2]
        # Nobody else is affected: another account pays as usual, and no certificate exists for either.
        assert (await c.pay(1, 2, 4, via=3)).settled
        assert not any({a, b} & c.driver(n).core.settled for n in c.nodes)
