"""Cheap checks before any proof is verified: the future-seq window, and settled payments dropped."""

from __future__ import annotations

from p2pnode.core.effects import OrderOutcome, VerifyProofs
from p2pnode.core.node import CoreParams, NodeCore
from p2pnode.core.payments import make_order
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.wire.messages import Gossip, Vote
from p2pnode.wire.types import ChainId, Digest, NodeId

CHAIN = ChainId(b"\x07" * 32)
PAYER = SpendingKey.from_bytes((5).to_bytes(32, "big"))
PAYEE = address_of(SpendingKey.from_bytes((6).to_bytes(32, "big")).public)
VALIDATORS = [NodeKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
PEER = NodeId(VALIDATORS[1].public)


def core(window: int = 4) -> NodeCore:
    return NodeCore(
        key=VALIDATORS[0],
        chain_id=CHAIN,
        validators=[k.public for k in VALIDATORS],
        balances={address_of(PAYER.public): 1000},
        params=CoreParams(future_seqs=window),
    )


def test_an_order_too_far_ahead_is_refused_before_its_proof_is_queued() -> None:
    c = core(window=4)
    ok = c.on_submit(0.0, make_order(PAYER, CHAIN, PAYEE, 1, 4))
    assert any(isinstance(e, VerifyProofs) for e in ok), "seq next+4 is inside the window"
    far = c.on_submit(0.0, make_order(PAYER, CHAIN, PAYEE, 1, 5))
    (outcome,) = [e for e in far if isinstance(e, OrderOutcome)]
    assert not outcome.accepted and "too far ahead" in outcome.error
    assert not any(isinstance(e, VerifyProofs) for e in far)


def test_the_window_applies_to_gossiped_orders_without_penalty() -> None:
    c = core(window=2)
    order = make_order(PAYER, CHAIN, PAYEE, 1, 9)
    out = c.on_message(0.0, PEER, Gossip(data=order.encode(), hops=1))
    assert not any(isinstance(e, VerifyProofs) for e in out)
    assert c.penalties.get(PEER, 0) == 0  # [IGNORE], not [REJECT]: a lagging node may see this


def test_a_vote_for_a_settled_payment_is_dropped_unverified() -> None:
    c = core()
    digest = Digest(b"\x11" * 32)
    c.settled.add(digest)
    vote = Vote(validator=PEER, digests=(digest,), signature=b"\x00" * 64)  # would not verify
    assert c.on_message(0.0, PEER, Gossip(data=vote.encode(), hops=1)) == []
    assert c.penalties.get(PEER, 0) == 0
