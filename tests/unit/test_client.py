"""``p2pnode.client.Client`` against the stand-in node over memory streams, under Trio's virtual
clock: typed status parsing, waiting for settlement, typed refusals, cancelled requests."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from p2pnode.client import (
    BlockedSlotInfo,
    Client,
    NodeStatus,
    NotSettled,
    PaymentRefused,
    PeerInfo,
    Settlement,
    SlotBlocked,
    open_client,
)
from p2pnode.client.progress import REPLY, SETTLE
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import SpendingKey, address_of
from p2pnode.errors import ConfigError
from p2pnode.wire.messages import StatusRequest
from p2pnode.wire.types import Address
from tests.unit.fake_node import CHAIN_ID, FakeNode, run, with_client

KEY = SpendingKey.from_bytes(bytes(31) + b"\x07")
SENDER = Address(address_of(KEY.public))
TO = b"\x33" * 20




def funded(next_seq: int = 0, **kw: Any) -> FakeNode:
    return FakeNode(accounts={SENDER: [1000, next_seq]}, **kw)


# -- NodeStatus.from_info --------------------------------------------------------------------------------
FULL: dict[str, Any] = {
    "node": "node-1",
    "node_id": "ab" * 32,
    "chain_id": CHAIN_ID.hex(),
    "role": "validator",
    "listen": "127.0.0.1:7001",
    "ready": True,
    "pid": 4242,
    "uptime_s": 12.5,
    "peer_count": 1,
    "peers": [{"node_id": "cd" * 32, "addr": "127.0.0.1:7002", "direction": "out", "role": "validator"}],
    "applied": 9,
    "root": "01" * 32,
    "accounts": 8,
    "held_orders": 1,
    "held_certificates": 2,
    "notes": 3,
    "shielded_applied": 4,
    "verifying": 5,
    "blocked_slots": [
        {
            "sender": SENDER.hex(),
            "seq": 3,
            "quorum": 3,
            "orders": {"aa" * 32: 2, "bb" * 32: 1},
            "voters": {"aa" * 32: "v0,v1", "bb" * 32: "v2"},
        }
    ],
    "gossip": {"received": 40, "duplicates": 3},
    "counters": {"orders_in": 7},
    "zz_unknown": [1, 2],
}


def test_status_reads_every_documented_key() -> None:
    s = NodeStatus.from_info(FULL)
    assert (s.name, s.node_id, s.chain_id, s.role, s.listen) == (
        "node-1",
        "ab" * 32,
        CHAIN_ID.hex(),
        "validator",
        "127.0.0.1:7001",
    )
    assert (s.ready, s.pid, s.uptime_s, s.peer_count, s.applied, s.root) == (
        True,
        4242,
        12.5,
        1,
        9,
        "01" * 32,
    )
    assert (s.accounts, s.held_orders, s.held_certificates, s.notes, s.shielded_applied, s.verifying) == (
        8,
        1,
        2,
        3,
        4,
        5,
    )
    assert s.peers == (PeerInfo("cd" * 32, "127.0.0.1:7002", "out", "validator"),)
    assert s.blocked == (
        BlockedSlotInfo(
            sender=SENDER.hex(),
            seq=3,
            quorum=3,
            orders={"aa" * 32: 2, "bb" * 32: 1},
            voters={"aa" * 32: ("v0", "v1"), "bb" * 32: ("v2",)},
        ),
    )
    assert s.gossip == {"received": 40, "duplicates": 3} and s.counters == {"orders_in": 7}
    assert s.info["zz_unknown"] == [1, 2]  # unknown keys are kept for printing
    assert s.blocked_slot(SENDER, 3) is s.blocked[0] and s.blocked_with(b"\xbb" * 32) is s.blocked[0]


@pytest.mark.parametrize("missing", sorted(FULL))
def test_status_with_a_key_missing_takes_its_default(missing: str) -> None:
    info = {k: v for k, v in FULL.items() if k != missing}
    s = NodeStatus.from_info(info)  # never KeyError
    assert missing not in s.info


def test_status_of_an_empty_or_odd_map() -> None:
    s = NodeStatus.from_info({})
    assert s == NodeStatus(info={})
    odd = NodeStatus.from_info(
        {
            "applied": "nine",
            "ready": 1,
            "peers": "none",
            "blocked_slots": [7, {"seq": True}],
            "gossip": {"x": "y", "n": 2},
            "chain_id": b"\x01" * 32,
            "uptime_s": True,
        }
    )
    assert (odd.applied, odd.ready, odd.peers, odd.uptime_s) == (0, False, (), 0.0)
    assert odd.chain_id == "01" * 32 and odd.gossip == {"n": 2}
    assert odd.blocked == (BlockedSlotInfo(sender="", seq=-1, quorum=0, orders={}, voters={}),)


def test_client_status_and_chain_id() -> None:
    node = funded()

    async def body(client: Client) -> None:
        status = await client.status()
        assert status.chain_id == CHAIN_ID.hex() and status.applied == 0
        assert await client.chain_id() == CHAIN_ID
        assert await client.chain_id() == CHAIN_ID  # asked once per connection

    run(lambda: with_client(node, body))
    assert node.requests == ["StatusRequest", "StatusRequest"]


def test_account() -> None:
    async def body(client: Client) -> None:
        acct = await client.account(SENDER)
        assert (acct.address, acct.balance, acct.next_seq, acct.blocked) == (SENDER, 1000, 2, "")

    run(lambda: with_client(funded(next_seq=2), body))


# -- submit and wait_settled ------------------------------------------------------------------------------
def test_submit_then_wait_settled_returns_the_settlement() -> None:
    order = make_order(KEY, CHAIN_ID, TO, 5, 0)
    digest = transfer_digest(order.transfer)

    async def body(client: Client) -> None:
        assert await client.settled(digest) is None
        assert await client.submit(order) == digest
        assert await client.wait_settled(digest) == Settlement(digest, b"\x07" * 32, 1)
        assert await client.settled(digest) == Settlement(digest, b"\x07" * 32, 1)

    run(lambda: with_client(funded(), body))


def test_wait_settled_returns_once_the_payment_settles() -> None:
    node = funded(settle=False)
    digest = b"\x44" * 32

    async def body(client: Client) -> float:
        start = trio.current_time()

        async def settle_later() -> None:
            await trio.sleep(3.5)
            node.settled.add(digest)

        async with trio.open_nursery() as n:
            n.start_soon(settle_later)
            await client.wait_settled(digest)
        return trio.current_time() - start

    # The fake node holds each WaitSettled up to its wait_ms; the next poll after 3.5 s sees it.
    assert 3.5 <= run(lambda: with_client(node, body)) <= 4.01


def test_wait_settled_raises_slot_blocked_at_once() -> None:
    node = funded(settle=False, blocked="blocked: seq 3 split 2/1", blocked_slots=[FULL["blocked_slots"][0]])

    async def body(client: Client) -> float:
        start = trio.current_time()
        with pytest.raises(SlotBlocked) as info:
            await client.wait_settled(b"\xaa" * 32)
        assert str(info.value).startswith(f"account {SENDER.hex()} seq 3 is blocked: conflicting orders ")
        assert info.value.facts["tx"] == "aa" * 32 and info.value.facts["seq"] == 3
        with pytest.raises(SlotBlocked, match=f"tx {'ee' * 32} can never settle: blocked: seq 3"):
            await client.wait_settled(b"\xee" * 32)  # not among the slot's orders: the reason alone
        return trio.current_time() - start

    assert run(lambda: with_client(node, body)) == 0


def test_an_order_the_node_dropped_after_holding_it_is_not_settled_not_blocked() -> None:
    node = funded(settle=False, blocked="expired: held 30 s without being votable (seq too high)")

    async def body(client: Client) -> None:
        with pytest.raises(NotSettled, match="may still settle") as info:
            await client.wait_settled(b"\xab" * 32)
        assert not isinstance(info.value, SlotBlocked)
        assert info.value.facts["expired"].startswith("expired:")

    run(lambda: with_client(node, body))


def test_submit_refusals_are_typed() -> None:
    order = make_order(KEY, CHAIN_ID, TO, 5, 0)

    async def refused(client: Client) -> None:
        with pytest.raises(PaymentRefused, match="^insufficient funds: balance 1000, amount 5$") as info:
            await client.submit(order)
        assert not isinstance(info.value, SlotBlocked)

    run(lambda: with_client(funded(refuse="insufficient funds: balance 1000, amount 5"), refused))

    async def blocked(client: Client) -> None:
        with pytest.raises(SlotBlocked, match=f"account {SENDER.hex()} seq 0 is blocked; split") as info:
            await client.submit(order)
        assert info.value.facts["blocked"] == "blocked: split"
        assert info.value.facts["tx"] == transfer_digest(order.transfer).hex()

    run(lambda: with_client(funded(refuse="blocked: split"), blocked))


# -- deadlines and progress -------------------------------------------------------------------------------
def test_a_cancelled_request_leaves_the_connection_usable() -> None:
    """A deadline that cuts a wait short: the late reply is dropped, the next request gets its own."""
    node = funded(settle=False)

    async def body(client: Client) -> None:
        with trio.move_on_after(0.5):
            await client.wait_settled(b"\x55" * 32)
        assert client.progress.current is not None and client.progress.current.kind == SETTLE
        assert client.progress.current.facts["tx"] == "55" * 32
        assert (await client.account(SENDER)).balance == 1000
        assert client.progress.current is None  # a step that ended normally is forgotten

    run(lambda: with_client(node, body))


def test_progress_names_the_outstanding_request() -> None:
    async def body(client: Client) -> None:
        with trio.move_on_after(1):
            await client.call(StatusRequest())
        step = client.progress.current
        assert step is not None and (step.kind, step.what) == (REPLY, "status reply from fake:1")

    run(lambda: with_client(FakeNode(silent=True), body))


def test_open_client_names_a_bad_address() -> None:
    async def main() -> None:
        with pytest.raises(ConfigError, match="expected HOST:PORT, got 'nowhere'"):
            await open_client("nowhere")

    run(main)


def test_outputs_pages_through_the_notes() -> None:
    notes = [(bytes([i]) * 32, b"memo", i % 2 == 0) for i in range(5)]
    node = FakeNode(outputs=notes, page=2)

    async def body(client: Client) -> None:
        assert await client.outputs() == notes
        assert await client.outputs(3) == notes[3:]

    run(lambda: with_client(node, body))
    assert node.requests.count("GetNotes") == 3 + 1  # pages [0,2) [2,4) [4,5), then [3,5)
