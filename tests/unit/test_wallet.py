"""The wallet's flows against a stand-in node over memory streams, under Trio's virtual clock:
the command line's deadlines, typed replies, lost connections, blocked slots, the account lock and
the pending order."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pnode.cli.failures import within
from p2pnode.client import (
    Client,
    ConnectionLost,
    NodeStatus,
    NodeTimeout,
    NotSettled,
    PaymentRefused,
    SlotBlocked,
    UnexpectedReply,
    Wallet,
    WalletBusy,
    describe_blocked,
    pay,
)
from p2pnode.client.state import (
    TRANSFER,
    Pending,
    WalletState,
    load_state,
    lock_path,
    save_state,
    state_path,
)
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import SpendingKey, address_of
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    Order,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    decode,
)
from p2pnode.wire.types import Address
from tests.unit.fake_node import CHAIN_ID, FakeNode, run, with_client

KEY = SpendingKey.from_bytes(bytes(31) + b"\x05")
SENDER = Address(address_of(KEY.public))
TO = b"\x22" * 20




@pytest.fixture
def account(tmp_path: Path) -> Path:
    path = tmp_path / "account-0.json"
    path.write_text(json.dumps({"address": SENDER.hex(), "spending_key": KEY.to_bytes().hex()}))
    return path


def wallet_of(account: Path) -> Wallet:
    return Wallet.from_file(account)


def funded(next_seq: int = 0, **kw: Any) -> FakeNode:
    return FakeNode(accounts={SENDER: [1000, next_seq]}, **kw)


# -- typed replies, budgets, lost connections ---------------------------------------------------------
def test_call_expect_names_both_types() -> None:
    async def body(client: Client) -> None:
        with pytest.raises(UnexpectedReply, match="fake:1: node answered AccountReply to StatusRequest"):
            await client.call_expect(StatusRequest(), StatusReply)

    run(lambda: with_client(FakeNode(wrong=StatusRequest), body))


def test_silent_node_is_bounded_by_the_budget() -> None:
    async def body(client: Client) -> float:
        start = trio.current_time()
        with pytest.raises(NodeTimeout, match=r"no status reply from fake:1 within 5s"):
            await within(5, client.progress, client.chain_id)
        return trio.current_time() - start

    assert run(lambda: with_client(FakeNode(silent=True), body)) == pytest.approx(5)


def test_budget_covers_every_step_of_pay(account: Path) -> None:
    """One deadline around pay: a node that answers status but never settles stops it at 5 s, and
    the error says the accepted order had not settled."""

    async def body(client: Client) -> float:
        start = trio.current_time()
        with pytest.raises(
            NotSettled, match=r"not settled within 5s: tx [0-9a-f]{64} was accepted by fake:1"
        ):
            await within(5, client.progress, lambda: pay(client, wallet_of(account), TO, 5))
        return trio.current_time() - start

    assert run(lambda: with_client(funded(settle=False), body)) == pytest.approx(5)
    # The order stays pending: the next command completes it rather than signing another for seq 0.
    state = load_state(account)
    assert state.pending is not None and state.pending.seq == 0


def test_closed_connection_is_connection_lost() -> None:
    async def body(client: Client) -> None:
        with pytest.raises(ConnectionLost, match="connection to fake:1 lost"):
            await client.call_expect(GetAccount(address=SENDER), AccountReply)

    run(lambda: with_client(FakeNode(close_on=GetAccount), body))


def test_broken_stream_is_connection_lost() -> None:
    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        await theirs.aclose()
        async with Client(ours, name="fake:2") as client:
            with pytest.raises(ConnectionLost, match="connection to fake:2 lost"):
                await client.call(StatusRequest())

    run(main)


# -- blocked slots ------------------------------------------------------------------------------------
# The shape of a blocked slot in StatusReply.info["blocked_slots"], as the node reports it
# (p2pnode.core.slots.BlockedSlot.as_dict): vote counts, and the voters as comma-separated id prefixes.
SLOT = {"sender": SENDER.hex(), "seq": 3, "orders": {"ab" * 32: ["v0", "v1"], "cd" * 32: ["v2", "v3"]}}
WIRE_SLOT = {
    "sender": SENDER.hex(),
    "seq": 3,
    "quorum": 3,
    "orders": {"ab" * 32: 2, "cd" * 32: 2},
    "voters": {"ab" * 32: "v0,v1", "cd" * 32: "v2,v3"},
}


def test_the_nodes_blocked_slots_shape_decodes() -> None:
    reply = StatusReply(info={"blocked_slots": [WIRE_SLOT]})
    assert decode(reply.encode()) == reply


def test_blocked_orders_reads_every_voter_shape() -> None:
    voters = {d: tuple(v) for d, v in SLOT["orders"].items()}  # type: ignore[attr-defined]
    for slot in (SLOT, WIRE_SLOT):
        found = NodeStatus.from_info({"blocked_slots": [slot]}).blocked_slot(SENDER, 3)
        assert found is not None and found.voters == voters
        assert found.orders == {d: 2 for d in voters}
    assert NodeStatus.from_info({"blocked_slots": [SLOT]}).blocked_slot(SENDER, 4) is None
    assert NodeStatus.from_info({}).blocked_slot(SENDER, 3) is None
    line = describe_blocked(SENDER, 3, "blocked: split", {"ab" * 32: ["v0"], "cd" * 32: ["v1", "v2"]})
    orders = f"{'cd' * 8} (2 votes), {'ab' * 8} (1 vote)"
    assert line == f"account {SENDER.hex()} seq 3 is blocked: conflicting orders {orders}; split"


def test_blocked_account_is_reported_at_once(account: Path) -> None:
    node = funded(next_seq=3, blocked="blocked: seq 3 split 2/2", blocked_slots=[WIRE_SLOT])

    async def body(client: Client) -> None:
        with pytest.raises(SlotBlocked) as info:
            await pay(client, wallet_of(account), TO, 5)
        text = str(info.value)
        assert text.startswith(f"account {SENDER.hex()} seq 3 is blocked: conflicting orders ")
        assert f"{'ab' * 8} (2 votes)" in text and f"{'cd' * 8} (2 votes)" in text
        assert info.value.facts["orders"] == SLOT["orders"]

    run(lambda: with_client(node, body))
    assert node.submitted == []  # nothing was signed for a blocked slot


def test_wait_stops_when_the_slot_becomes_blocked(account: Path) -> None:
    node = funded(settle=False)

    async def body(client: Client) -> float:
        start = trio.current_time()
        async with trio.open_nursery() as n:

            async def block_later() -> None:
                await trio.sleep(2)
                node.blocked = "blocked: seq 0 split"

            n.start_soon(block_later)
            with pytest.raises(SlotBlocked, match=f"account {SENDER.hex()} seq 0 is blocked; seq 0 split"):
                await pay(client, wallet_of(account), TO, 5)
        return trio.current_time() - start

    # Blocked at 2 s: the wait ends with the next poll (at most one wait_ms later), not at 30 s.
    assert run(lambda: with_client(node, body)) <= 3.01


def test_submit_refused_as_blocked(account: Path) -> None:
    node = funded(refuse="blocked: conflicting orders for seq 0")

    async def body(client: Client) -> None:
        with pytest.raises(SlotBlocked, match="seq 0 is blocked; conflicting orders for seq 0"):
            await pay(client, wallet_of(account), TO, 5)

    run(lambda: with_client(node, body))


# -- the wallet's state and lock ------------------------------------------------------------------------
def pending_order(seq: int, amount: int = 9) -> tuple[Order, Pending]:
    order = make_order(KEY, CHAIN_ID, TO, amount, seq)
    return order, Pending(
        kind=TRANSFER, seq=seq, digest=transfer_digest(order.transfer), order=order.encode()
    )


def test_state_file_is_private_and_round_trips(account: Path) -> None:
    _, p = pending_order(4)
    state = WalletState(chain_id=CHAIN_ID, next_seq=4, pending=p)
    save_state(account, state)
    assert state_path(account).name == "account-0.json.state.json"
    assert os.stat(state_path(account)).st_mode & 0o777 == 0o600
    assert load_state(account) == state
    assert [f.name for f in account.parent.iterdir() if f.name.endswith(".tmp")] == []


def test_pay_records_next_seq_and_uses_the_larger(account: Path) -> None:
    # The wallet was told seq 5 settled elsewhere; this node lags at 2: the next order is seq 6.
    save_state(account, WalletState(chain_id=CHAIN_ID, next_seq=6))
    node = funded(next_seq=2, settle=False)

    async def body(client: Client) -> None:
        with pytest.raises(NotSettled):
            await within(1, client.progress, lambda: pay(client, wallet_of(account), TO, 5))

    run(lambda: with_client(node, body))
    assert decode(node.submitted[0], expect=Order).transfer.seq == 6


def test_pay_settles_and_records(account: Path) -> None:
    node = funded(next_seq=0)

    async def body(client: Client) -> None:
        result = await pay(client, wallet_of(account), TO, 5)
        assert (result.seq, result.balance, result.completed) == (0, 995, None)

    run(lambda: with_client(node, body))
    assert load_state(account) == WalletState(chain_id=CHAIN_ID, next_seq=1, pending=None)


def test_pending_order_is_resubmitted_before_a_new_one(account: Path) -> None:
    earlier, p = pending_order(0, amount=9)
    save_state(account, WalletState(chain_id=CHAIN_ID, next_seq=0, pending=p))
    node = funded(next_seq=0)
    lines: list[str] = []

    async def body(client: Client) -> None:
        result = await pay(client, wallet_of(account), TO, 5, notify=lines.append)
        assert result.seq == 1 and result.completed == (0, p.digest)
        assert result.balance == 1000 - 9 - 5

    run(lambda: with_client(node, body))
    assert node.submitted[0] == earlier.encode()  # exactly the recorded bytes, first
    assert decode(node.submitted[1], expect=Order).transfer.seq == 1
    assert lines == [f"completing the earlier payment seq 0 (tx {p.digest.hex()}) first"]
    assert load_state(account) == WalletState(chain_id=CHAIN_ID, next_seq=2, pending=None)


def test_pending_order_already_settled_is_cleared(account: Path) -> None:
    _, p = pending_order(0)
    save_state(account, WalletState(chain_id=CHAIN_ID, next_seq=0, pending=p))
    node = funded(next_seq=1)

    async def body(client: Client) -> None:
        result = await pay(client, wallet_of(account), TO, 5)
        assert result.seq == 1 and result.completed is None

    run(lambda: with_client(node, body))
    assert len(node.submitted) == 1
    assert load_state(account).pending is None


def test_refused_pending_order_is_kept_and_nothing_new_is_signed(account: Path) -> None:
    _, p = pending_order(0)
    save_state(account, WalletState(chain_id=CHAIN_ID, next_seq=0, pending=p))
    node = funded(next_seq=0, refuse="insufficient funds: balance 1, amount 9")

    async def body(client: Client) -> None:
        with pytest.raises(PaymentRefused, match="earlier payment seq 0 .* is still pending and was refused"):
            await pay(client, wallet_of(account), TO, 5)

    run(lambda: with_client(node, body))
    assert node.submitted == [p.order]
    assert load_state(account).pending == p


def test_refused_new_order_clears_its_pending_entry(account: Path) -> None:
    node = funded(refuse="insufficient funds: balance 1000, amount 5000")

    async def body(client: Client) -> None:
        with pytest.raises(PaymentRefused, match="^insufficient funds"):
            await pay(client, wallet_of(account), TO, 5000)

    run(lambda: with_client(node, body))
    assert load_state(account) == WalletState(chain_id=CHAIN_ID, next_seq=0, pending=None)


def test_state_of_another_chain_is_ignored(account: Path) -> None:
    _, p = pending_order(0)
    save_state(account, WalletState(chain_id=b"\x99" * 32, next_seq=40, pending=p))
    node = funded(next_seq=0)

    async def body(client: Client) -> None:
        assert (await pay(client, wallet_of(account), TO, 5)).seq == 0

    run(lambda: with_client(node, body))


def test_lock_wait_counts_against_the_budget(account: Path) -> None:
    node = funded()
    fd = os.open(lock_path(account), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another command holds the account
    try:

        async def body(client: Client) -> float:
            start = trio.current_time()
            with pytest.raises(WalletBusy, match=r"account .*account-0.json is in use by another p2pnode"):
                await within(4, client.progress, lambda: pay(client, wallet_of(account), TO, 5))
            return trio.current_time() - start

        assert run(lambda: with_client(node, body)) == pytest.approx(4, abs=0.05)
    finally:
        os.close(fd)
    assert node.submitted == []


def test_lock_serializes_two_pays_in_one_process(account: Path) -> None:
    """Two pays from one account file at once: the second waits for the first and takes the next seq."""
    node = funded()
    seqs: list[int] = []

    async def main() -> None:
        async def one() -> None:
            async def body(client: Client) -> None:
                seqs.append((await pay(client, wallet_of(account), TO, 5)).seq)

            await with_client(node, body)

        async with trio.open_nursery() as n:
            n.start_soon(one)
            n.start_soon(one)

    run(main)
    assert sorted(seqs) == [0, 1]
    assert [decode(o, expect=Order).transfer.seq for o in node.submitted] == [0, 1]


def test_submit_order_request_carries_recorded_bytes(account: Path) -> None:
    # SubmitOrder round-trips: what the state file holds is what goes on the wire.
    order, p = pending_order(2)
    assert SubmitOrder(order=decode(p.order, expect=Order)).order == order
