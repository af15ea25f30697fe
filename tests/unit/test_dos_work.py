"""Proof verification budgets per source, dropping a cut-off source's queued work, suspect lanes, and
held orders that expire (pure core, time passed in; proofs "verified" by feeding results back)."""

from __future__ import annotations

from p2pnode.core.admission import admit
from p2pnode.core.budget import ProofBudget, TokenBucket, Trust
from p2pnode.core.effects import Blocked, CloseClient, Disconnect, Effect, Emit, OrderOutcome, VerifyProofs
from p2pnode.core.gossip import GossipParams
from p2pnode.core.node import BUSY, PENALTY_DECAY_S, PENALTY_LIMIT, CoreParams, NodeCore
from p2pnode.core.payments import make_order, message_id, statement_digest
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.wire.messages import Gossip, IHave, Order
from p2pnode.wire.types import ChainId, NodeId

CHAIN = ChainId(b"\x07" * 32)
PAYER = SpendingKey.from_bytes((5).to_bytes(32, "big"))
PAYEE = address_of(SpendingKey.from_bytes((6).to_bytes(32, "big")).public)
VALIDATORS = [NodeKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
HONEST = NodeId(VALIDATORS[1].public)
ATTACKER = NodeId(NodeKey.from_seed(b"\x99" * 32).public)
_PROOF = make_order(PAYER, CHAIN, PAYEE, 999, 0).proof


def core(rate: float = 1.0, burst: float = 10.0, held_s: float = 30.0) -> NodeCore:
    return NodeCore(
        key=VALIDATORS[0],
        chain_id=CHAIN,
        validators=[k.public for k in VALIDATORS],
        balances={address_of(PAYER.public): 1000},
        params=CoreParams(verify_rate=rate, verify_burst=burst, held_order_s=held_s),
    )


def bad(amount: int) -> Order:
    """Well-formed, but the proof is another transfer's: it does not verify."""
    good = make_order(PAYER, CHAIN, PAYEE, amount, 0)
    return Order(transfer=good.transfer, sender_key=good.sender_key, proof=_PROOF)


def queued(effects: list[Effect]) -> list[Order]:
    return [o for e in effects if isinstance(e, VerifyProofs) for _, o in e.orders]  # type: ignore[misc]


def events(effects: list[Effect], name: str) -> list[Emit]:
    return [e for e in effects if isinstance(e, Emit) and e.event == name]


def gossip(c: NodeCore, now: float, peer: NodeId, order: Order) -> list[Effect]:
    return c.on_message(now, peer, Gossip(data=order.encode(), hops=1))


def verified(c: NodeCore, now: float, orders: list[Order], ok: bool) -> list[Effect]:
    return c.on_proofs_verified(now, [(statement_digest(o), o, ok, 1, len(orders)) for o in orders])


def test_token_bucket_debt_and_prune() -> None:
    b = TokenBucket(rate=1.0, burst=4.0)
    assert b.take(0.0, 3) == 3
    b.charge(0.0, 10)
    assert b.tokens == -4.0  # never deeper than -burst
    assert b.take(4.0, 1) == 0  # 4 s refill only paid the debt
    assert b.take(5.0, 1) == 1
    p = ProofBudget(rate=1.0, burst=4.0)
    p.take("a", 0.0)
    p.prune(10.0)
    assert len(p) == 0


def test_orders_beyond_a_peers_budget_are_ignored_not_verified() -> None:
    c = core(rate=1.0, burst=5)
    out: list[Effect] = []
    for amount in range(1, 11):
        out += gossip(c, 0.0, ATTACKER, make_order(PAYER, CHAIN, PAYEE, amount, 0))
    assert len(queued(out)) == 5
    ignored = [e for e in events(out, "order_ignored") if e.fields["reason"] == "verification budget"]
    assert len(ignored) == 5 and c.verify_stats["budget_ignored"] == 5
    assert c.penalties.get(ATTACKER, 0) == 0  # [IGNORE]: a busy honest relay is not punished
    # The ignored order's id is forgotten: the same order from another peer is still taken.
    assert len(queued(gossip(c, 0.0, HONEST, make_order(PAYER, CHAIN, PAYEE, 10, 0)))) == 1
    # Two seconds later the attacker may have two more verified.
    later = [gossip(c, 2.0, ATTACKER, make_order(PAYER, CHAIN, PAYEE, a, 0)) for a in (20, 21, 22)]
    assert [len(queued(x)) for x in later] == [1, 1, 0]


def test_an_invalid_proof_costs_its_source_more_and_makes_it_suspect() -> None:
    c = core(rate=1.0, burst=20)
    o = bad(1)
    gossip(c, 0.0, ATTACKER, o)
    verified(c, 0.0, [o], ok=False)
    # 20 - 1 - 8 = 11 tokens left.
    took = [queued(gossip(c, 0.0, ATTACKER, make_order(PAYER, CHAIN, PAYEE, a, 0))) for a in range(2, 15)]
    assert sum(len(q) for q in took) == 11
    attacker_order = took[0][0]
    honest_order = make_order(PAYER, CHAIN, PAYEE, 500, 0)
    gossip(c, 0.0, HONEST, honest_order)
    assert c.verify_lane(0.0, statement_digest(attacker_order), attacker_order) == ATTACKER
    assert c.lane_trust(0.0, ATTACKER) == Trust.SUSPECT
    assert c.lane_trust(0.0, HONEST) == Trust.NEW  # nothing of it verified valid yet
    verified(c, 0.0, [honest_order], ok=True)
    assert c.lane_trust(0.0, HONEST) == Trust.TRUSTED
    assert c.lane_trust(30.0, ATTACKER) == Trust.NEW  # the mark expired; it never sent a valid proof
    # A proof a suspect source and a new client both asked for waits in the client's lane.
    c.on_submit(0.0, attacker_order, "conn")
    assert c.verify_lane(0.0, statement_digest(attacker_order), attacker_order) == "conn"


def test_a_penalized_peers_queued_orders_are_dropped_before_verification() -> None:
    c = core(rate=1.0, burst=1000)
    flood = [bad(a) for a in range(1, 101)]
    for o in flood:
        gossip(c, 0.0, ATTACKER, o)
    shared = flood[-1]
    c.on_submit(0.0, shared, "conn")  # a client sent one of them too (it waits on the same check)
    out = verified(c, 0.1, flood[:PENALTY_LIMIT], ok=False)
    assert any(isinstance(e, Disconnect) and e.peer == ATTACKER for e in out)
    (dropped,) = events(out, "verify_dropped")
    assert dropped.fields["orders"] == 100 - PENALTY_LIMIT - 1
    wanted = [o for o in flood[PENALTY_LIMIT:] if c.still_wanted(statement_digest(o), o)]
    assert wanted == [shared]  # only the order another source asked for is still verified
    assert c.verify_stats["bad_proofs"] == PENALTY_LIMIT


def test_a_disconnected_peers_queued_orders_are_dropped() -> None:
    c = core(rate=1.0, burst=1000)
    flood = [make_order(PAYER, CHAIN, PAYEE, a, 0) for a in range(1, 51)]
    for o in flood:
        gossip(c, 0.0, ATTACKER, o)
    out = c.on_peer_disconnected(1.0, ATTACKER)
    assert events(out, "verify_dropped")[0].fields["orders"] == 50
    assert not any(c.still_wanted(statement_digest(o), o) for o in flood)
    assert len(c.verifying) == 0


def test_a_client_connection_beyond_its_budget_is_refused_at_once() -> None:
    c = core(rate=1.0, burst=3)
    conn, other = object(), object()
    outs = [c.on_submit(0.0, make_order(PAYER, CHAIN, PAYEE, a, 0), conn) for a in range(1, 6)]
    assert [len(queued(o)) for o in outs] == [1, 1, 1, 0, 0]
    (refusal,) = [e for e in outs[3] if isinstance(e, OrderOutcome)]
    assert not refusal.accepted and refusal.error == BUSY
    # Another connection has a budget of its own.
    assert len(queued(c.on_submit(0.0, make_order(PAYER, CHAIN, PAYEE, 9, 0), other))) == 1


def test_a_client_connection_sending_bad_proofs_is_cut_off() -> None:
    c = core(rate=100.0, burst=1000)
    conn = object()
    flood = [bad(a) for a in range(1, PENALTY_LIMIT + 6)]
    for o in flood:
        c.on_submit(0.0, o, conn)
    out = verified(c, 0.1, flood[:PENALTY_LIMIT], ok=False)
    assert [e.source for e in out if isinstance(e, CloseClient)] == [conn]
    refused = [e for e in out if isinstance(e, OrderOutcome) and e.error.startswith("connection closed")]
    assert len(refused) == 5  # its queued rest is dropped and refused, not verified
    assert not any(c.still_wanted(statement_digest(o), o) for o in flood)
    nxt = c.on_submit(0.2, make_order(PAYER, CHAIN, PAYEE, 77, 0), conn)
    assert isinstance(nxt[-1], CloseClient) and not queued(nxt)
    # Another connection is unaffected.
    assert len(queued(c.on_submit(0.2, make_order(PAYER, CHAIN, PAYEE, 77, 0), object()))) == 1


def test_a_held_order_submitted_here_expires_and_is_refused_to_its_client() -> None:
    c = core(held_s=5.0)
    future = make_order(PAYER, CHAIN, PAYEE, 3, 1)  # seq 1: seq 0 never arrives
    digest = statement_digest(future)
    c.on_submit(0.0, future, "conn")
    out = verified(c, 0.0, [future], ok=True)
    assert any(isinstance(e, OrderOutcome) and e.accepted for e in out)
    assert events(out, "vote_deferred") and c.held_orders
    assert not events(c.tick(4.0), "order_expired")
    out = c.tick(6.0)
    (expired,) = events(out, "order_expired")
    assert expired.fields["submitted_here"] is True and "expired" in expired.fields["reason"]
    assert any(isinstance(e, OrderOutcome) and not e.accepted for e in out)
    assert any(isinstance(e, Blocked) and digest in e.digests for e in out)
    assert c.blocked_for(digest).startswith("expired")
    assert not c.held_orders and digest not in c.orders


def test_a_held_order_from_a_peer_expires_with_a_log_line() -> None:
    c = core(held_s=5.0)
    future = make_order(PAYER, CHAIN, PAYEE, 3, 2)
    gossip(c, 0.0, HONEST, future)
    verified(c, 0.0, [future], ok=True)
    out = c.tick(10.0)
    (expired,) = events(out, "order_expired")
    assert expired.fields["submitted_here"] is False
    assert not any(isinstance(e, (OrderOutcome, Blocked)) for e in out)


def test_an_amount_above_the_balance_is_ignored_before_the_proof() -> None:
    c = core()
    assert admit(make_order(PAYER, CHAIN, PAYEE, 5000, 0), CHAIN, c.ledger, False) is not None
    out = gossip(c, 0.0, HONEST, make_order(PAYER, CHAIN, PAYEE, 5000, 0))
    assert not queued(out) and c.penalties.get(HONEST, 0) == 0


def test_useless_traffic_costs_its_peer_and_useful_deliveries_earn_it_back() -> None:
    """An IHAVE announcing more ids than a peer may per heartbeat cannot help: each costs its peer a
    point; a peer with its reserve spent is disconnected. A valid delivery earns a point back."""
    c = NodeCore(
        key=VALIDATORS[0],
        chain_id=CHAIN,
        validators=[k.public for k in VALIDATORS],
        balances={address_of(PAYER.public): 1000},
        params=CoreParams(gossip=GossipParams(max_ihave=4), useless_rate=0.0, useless_burst=5.0),
    )
    n = [0]

    def over(peer: NodeId) -> list[Effect]:
        n[0] += 1
        ids = tuple(bytes([n[0] % 256, i]) * 16 for i in range(5))  # 5 ids, 4 allowed per heartbeat
        return c.on_message(0.0, peer, IHave(ids=ids))

    cut: list[Effect] = []
    for _ in range(4):
        cut += over(ATTACKER)
    assert not [e for e in cut if isinstance(e, Disconnect)]
    assert [e.reason for e in over(ATTACKER) if isinstance(e, Disconnect)] == [
        "useless traffic: IHAVE beyond its ids per heartbeat"
    ]

    relay = NodeId(NodeKey.from_seed(b"\x97" * 32).public)  # an honest full node (not committee)
    # The honest peer sends 3 such IHAVEs, then a valid order (a point back), then 2 more: 5, like
    # the attacker, but it is still connected; the next one spends its reserve.
    out: list[Effect] = []
    for _ in range(3):
        out += over(relay)
    out += verified(c, 0.0, queued(gossip(c, 0.0, relay, make_order(PAYER, CHAIN, PAYEE, 1, 0))), ok=True)
    for _ in range(2):
        out += over(relay)
    assert not [e for e in out if isinstance(e, Disconnect)]
    assert [e for e in over(relay) if isinstance(e, Disconnect)]


def test_a_second_order_for_a_future_seq_is_ignored_and_costs_its_peer() -> None:
    """The first order verified for a future (sender, seq) waits; another for the same seq is
    neither verified nor relayed, and costs its peer a point (one payer cannot make the network
    verify many variants of each of its next seqs)."""
    c = NodeCore(
        key=VALIDATORS[0],
        chain_id=CHAIN,
        validators=[k.public for k in VALIDATORS],
        balances={address_of(PAYER.public): 1000},
        params=CoreParams(useless_rate=0.0, useless_burst=3.0),
    )
    first = make_order(PAYER, CHAIN, PAYEE, 1, 2)  # next seq is 0
    verified(c, 0.0, queued(gossip(c, 0.0, ATTACKER, first)), ok=True)
    out: list[Effect] = []
    for amount in (2, 3):
        out += gossip(c, 0.0, ATTACKER, make_order(PAYER, CHAIN, PAYEE, amount, 2))
    assert not queued(out) and len(events(out, "order_ignored")) == 2
    assert not [e for e in out if isinstance(e, Disconnect)]
    last = gossip(c, 0.0, ATTACKER, make_order(PAYER, CHAIN, PAYEE, 4, 2))
    assert [e for e in last if isinstance(e, Disconnect)]
    # The account's next seq is different: a conflicting order there is taken (slot evidence).
    verified(c, 0.0, queued(gossip(c, 0.0, HONEST, make_order(PAYER, CHAIN, PAYEE, 1, 0))), ok=True)
    assert queued(gossip(c, 0.0, HONEST, make_order(PAYER, CHAIN, PAYEE, 2, 0)))


def test_the_same_payload_again_from_the_same_peer_costs_it_a_duplicate_from_another_does_not() -> None:
    c = NodeCore(
        key=VALIDATORS[0],
        chain_id=CHAIN,
        validators=[k.public for k in VALIDATORS],
        balances={address_of(PAYER.public): 1000},
        params=CoreParams(useless_rate=0.0, useless_burst=2.0),
    )
    order = make_order(PAYER, CHAIN, PAYEE, 1, 0)
    other = NodeId(NodeKey.from_seed(b"\x98" * 32).public)
    verified(c, 0.0, queued(gossip(c, 0.0, ATTACKER, order)), ok=True)
    assert gossip(c, 0.0, other, order) == []  # a duplicate from another peer: free
    assert gossip(c, 0.0, ATTACKER, order) == []  # the same peer again: a point (1 left)
    assert [e for e in gossip(c, 0.0, ATTACKER, order) if isinstance(e, Disconnect)]
    # Committee members are exempt (a restarted validator re-pushes its locked orders).
    for _ in range(5):
        assert not [e for e in gossip(c, 0.0, HONEST, order) if isinstance(e, Disconnect)]


def test_undelivered_announcements_cut_off_a_fast_liar_but_never_a_slow_honest_peer() -> None:
    """An IHAVE id that nobody delivers within the follow-up time is a broken promise: one penalty per
    heartbeat. A peer announcing fake ids every heartbeat is disconnected after PENALTY_LIMIT of them;
    a peer that misses one id every 12 s (slower than PENALTY_DECAY_S) stays connected however long it
    runs, and a reply after the retry timeout but inside the follow-up time costs nothing."""

    def node() -> NodeCore:
        c = core()
        c.on_peer_connected(0.0, ATTACKER)
        c.on_peer_connected(0.0, HONEST)
        return c

    def cut(effects: list[Effect], peer: NodeId) -> bool:
        return any(isinstance(e, Disconnect) and e.peer == peer for e in effects)

    c = node()
    t, out = 0.0, []
    for i in range(PENALTY_LIMIT + 5):
        c.on_message(t, ATTACKER, IHave(ids=(bytes([i, 7]) * 16,)))
        t += 0.5
        out += c.tick(t)
        out += c.tick(t + 3.0)
        if cut(out, ATTACKER):
            break
    assert cut(out, ATTACKER) and i + 1 >= PENALTY_LIMIT
    assert t < PENALTY_DECAY_S * 2

    c = node()
    out = []
    t = 0.0
    for i in range(3 * PENALTY_LIMIT):
        c.on_message(t, HONEST, IHave(ids=(bytes([i, 9]) * 16,)))
        out += c.tick(t + 3.5)
        t += PENALTY_DECAY_S + 2.0
        out += c.tick(t)
    assert len(events(out, "message_rejected")) == 3 * PENALTY_LIMIT
    assert not cut(out, HONEST)

    c = node()
    order = make_order(PAYER, CHAIN, PAYEE, 1, 0)
    raw = order.encode()
    c.on_message(0.0, HONEST, IHave(ids=(message_id(raw),)))
    out = c.tick(0.5)  # past iwant_timeout: asks again, judges nothing yet
    out += gossip(c, 1.5, HONEST, order)  # the reply, late
    out += c.tick(4.0)
    assert not events(out, "message_rejected")
