"""Per-peer budgets (core/budget.py) and the anti-entropy answers they bound."""

from __future__ import annotations

from p2pnode.core.budget import Budgets, TokenBucket
from p2pnode.core.effects import Disconnect, Send
from p2pnode.core.node import CoreParams, NodeCore
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.wire.messages import CertBatch, SyncHeads, SyncSummary
from p2pnode.wire.types import Address, ChainId, NodeId

CHAIN = ChainId(b"\x09" * 32)
VALIDATORS = [NodeKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
PEER, OTHER = NodeId(VALIDATORS[1].public), NodeId(VALIDATORS[2].public)
ACCOUNT = Address(address_of(SpendingKey.from_bytes((3).to_bytes(32, "big")).public))


def test_a_bucket_starts_full_refills_at_its_rate_and_never_overdraws() -> None:
    b = TokenBucket(rate=10.0, burst=5.0)
    assert b.take(0.0, 3) == 3
    assert b.take(0.0, 3) == 2
    assert b.take(0.0, 1) == 0
    assert b.take(0.2, 5) == 2  # 0.2 s at 10/s
    assert b.take(10.0, 100) == 5  # never more than the burst


def test_charge_goes_into_debt_down_to_its_floor() -> None:
    bucket = TokenBucket(rate=1.0, burst=2.0)
    assert bucket.charge(0.0, 5.0) == -2.0  # full (2), charged 5: debt floored at burst
    assert bucket.available(1.0) == -1.0  # one second of refill
    unbounded = TokenBucket(rate=1.0, burst=2.0, max_debt=float("inf"))
    assert unbounded.charge(0.0, 5.0) == -3.0  # every token charged is owed
    assert unbounded.available(5.0) == 2.0  # paid back, then capped at burst


def test_budgets_are_per_source_and_forgotten() -> None:
    budgets: Budgets[str] = Budgets(rate=1.0, burst=2.0)
    assert budgets.take("a", 0.0, 5) == 2 and budgets.take("b", 0.0, 5) == 2
    assert budgets.take("a", 0.0, 1) == 0
    budgets.forget("a")
    assert len(budgets) == 1 and budgets.take("a", 0.0, 1) == 1


def core_with_history(certs: int) -> NodeCore:
    c = NodeCore(
        key=VALIDATORS[0],
        chain_id=CHAIN,
        validators=[k.public for k in VALIDATORS],
        balances={ACCOUNT: 10**6},
        params=CoreParams(sync_batch=64, sync_interval=1.0),
    )
    c.ledger.accounts[ACCOUNT].next_seq = certs
    for s in range(certs):
        c.certs[(ACCOUNT, s)] = bytes(40)
    return c


def certs_sent(effects: list[object]) -> int:
    return sum(len(e.msg.certs) for e in effects if isinstance(e, Send) and isinstance(e.msg, CertBatch))


def test_a_sync_request_gets_one_batch_per_period_however_often_it_is_sent() -> None:
    c = core_with_history(1000)
    ask = SyncHeads(heads=((ACCOUNT, 0),), reply=False)
    assert certs_sent(c.on_message(0.0, PEER, ask)) == 64
    assert sum(certs_sent(c.on_message(0.0 + i * 1e-3, PEER, ask)) for i in range(15)) <= 2
    assert certs_sent(c.on_message(1.2, PEER, ask)) == 64  # a period later: one more batch
    assert certs_sent(c.on_message(1.2, OTHER, ask)) == 64  # other peers have their own budget


def test_sync_summaries_are_answered_at_a_bounded_rate() -> None:
    c = core_with_history(3)
    summary = SyncSummary(root=b"\x00" * 32, applied=0)
    effects = [c.on_message(0.0, PEER, summary) for _ in range(25)]
    answered = sum(any(isinstance(e, Send) for e in es) for es in effects)
    assert answered == 4
    # The 21 beyond the rate were not answered but counted; the 21st (20 in reserve) penalized the peer.
    assert c.sync_stats["rate_limited"] == 21
    assert [e.reason for e in effects[-1] if isinstance(e, Disconnect)] == [
        "rate limited: SyncSummary requests beyond the per-peer sync budget"
    ]
