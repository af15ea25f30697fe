"""GossipRouter rules, one handler call at a time, with the clock passed in and a seeded rng."""

from __future__ import annotations

import random

import pytest

from p2pnode.core.effects import Send
from p2pnode.core.gossip import CERT, MCACHE_TTL, ORDER, VOTE, GossipParams, GossipRouter
from p2pnode.core.payments import message_id
from p2pnode.wire.messages import Gossip, IHave, IWant
from p2pnode.wire.types import NodeId

PEERS = [NodeId(bytes([i + 1]) * 32) for i in range(10)]
DATA = b"payload-1"
MID = message_id(DATA)


def router(seed: int = 0, peers: list[NodeId] = PEERS, **params: object) -> GossipRouter:
    r = GossipRouter(GossipParams(**params), rng=random.Random(seed))  # type: ignore[arg-type]
    for p in peers:
        r.add_peer(p)
    return r


def targets(sends: list[Send], kind: type) -> list[NodeId]:
    return [s.peer for s in sends if isinstance(s.msg, kind)]


def ihave_ids(sends: list[Send]) -> dict[NodeId, tuple[bytes, ...]]:
    out: dict[NodeId, tuple[bytes, ...]] = {}
    for s in sends:
        if isinstance(s.msg, IHave):
            out[s.peer] = out.get(s.peer, ()) + s.msg.ids
    return out


# -- duplicates -------------------------------------------------------------------------------------------
def test_duplicate_detection() -> None:
    r = router()
    assert not r.seen(MID)
    assert r.receive(0.0, PEERS[0], DATA) == (MID, True)
    assert r.seen(MID)
    assert r.receive(0.1, PEERS[1], DATA) == (MID, False)
    assert r.receive(0.2, None, DATA) == (MID, False)
    assert (r.stats.received, r.stats.duplicate) == (3, 2)


def test_own_publication_is_a_duplicate_when_it_comes_back() -> None:
    r = router()
    r.publish(0.0, DATA)
    assert r.receive(0.1, PEERS[0], DATA) == (MID, False)


def test_receive_alone_sends_nothing_and_announces_nothing() -> None:
    """Nothing is forwarded before validation: ``receive`` only classifies."""
    r = router()
    r.receive(0.0, PEERS[0], DATA)
    assert r.tick(1.0) == []


# -- eager push ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_eager_push_reaches_eager_fanout_peers(seed: int) -> None:
    r = router(seed, eager_fanout=3, lazy_fanout=4)
    mid, _ = r.receive(0.0, PEERS[0], DATA)
    sends = r.forward(0.0, mid, DATA, hops=2)
    eager = targets(sends, Gossip)
    assert len(sends) == len(eager) == 3 == len(set(eager))
    assert all(s.msg == Gossip(data=DATA, hops=3) for s in sends)
    assert PEERS[0] not in eager


def test_publish_starts_at_one_hop_and_hops_saturate() -> None:
    r = router()
    assert {s.msg for s in r.publish(0.0, DATA)} == {Gossip(data=DATA, hops=1)}
    r2 = router()
    mid, _ = r2.receive(0.0, PEERS[0], DATA)
    assert {s.msg for s in r2.forward(0.0, mid, DATA, hops=255)} == {Gossip(data=DATA, hops=255)}


@pytest.mark.parametrize("seed", range(20))
def test_never_pushes_back_to_the_sender_or_to_peers_known_to_have_it(seed: int) -> None:
    # Fanouts large enough to reach every peer not excluded, so exclusion is the only reason to skip.
    r = router(seed, eager_fanout=5, lazy_fanout=10)
    mid, _ = r.receive(0.0, PEERS[0], DATA)
    r.receive(0.0, PEERS[1], DATA)  # a duplicate: PEERS[1] has it too
    sends = r.forward(0.0, mid, DATA, hops=0)
    announced = ihave_ids(r.tick(0.1))
    reached = targets(sends, Gossip) + list(announced)
    assert PEERS[0] not in reached and PEERS[1] not in reached
    assert sorted(reached) == sorted(PEERS[2:])
    assert not set(targets(sends, Gossip)) & set(announced), "eager and lazy peers are disjoint"
    # A peer that announces the id once we hold it is known to have it: a later publish skips it.
    r.on_ihave(0.2, PEERS[3], (mid,))
    again = r.publish(0.2, DATA)
    assert PEERS[3] not in targets(again, Gossip)


def test_fewer_candidates_than_fanout() -> None:
    r = router(peers=PEERS[:3], eager_fanout=5)
    mid, _ = r.receive(0.0, PEERS[0], DATA)
    assert sorted(targets(r.forward(0.0, mid, DATA, 0), Gossip)) == sorted(PEERS[1:3])
    assert r.tick(0.1) == []


@pytest.mark.parametrize("already_received", [False, True], ids=["unseen", "seen-not-yet-forwarded"])
def test_announcer_of_an_id_is_not_pushed_the_payload(already_received: bool) -> None:
    """A peer that sent IHAVE for an id has it; the payload must not be pushed to it."""
    r = router(peers=PEERS[:3], eager_fanout=5)
    if already_received:
        mid, _ = r.receive(0.0, PEERS[1], DATA)  # still being validated when the IHAVE comes in
        r.on_ihave(0.05, PEERS[2], (MID,))
    else:
        r.on_ihave(0.0, PEERS[1], (MID,))
        r.on_ihave(0.0, PEERS[2], (MID,))
        mid, _ = r.receive(0.1, PEERS[1], DATA)  # the IWANT answer
    sends = r.forward(0.1, mid, DATA, hops=0)
    assert targets(sends, Gossip) == [PEERS[0]]


# -- lazy path ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(10))
def test_lazy_ihave_is_emitted_on_tick(seed: int) -> None:
    r = router(seed, eager_fanout=3, lazy_fanout=4)
    mid, _ = r.receive(0.0, PEERS[0], DATA)
    eager = targets(r.forward(0.0, mid, DATA, 0), Gossip)
    assert r.stats.ihave_sent == 0
    sends = r.tick(0.1)
    announced = ihave_ids(sends)
    assert len(announced) == 4
    assert all(ids == (mid,) for ids in announced.values())
    assert not set(announced) & (set(eager) | {PEERS[0]})
    assert r.stats.ihave_sent == 4
    assert r.tick(0.2) == [], "announcements are sent once"


def test_ihave_batches_respect_max_ihave() -> None:
    r = router(peers=PEERS[:1], eager_fanout=0, origin_fanout=0, lazy_fanout=1, max_ihave=2)
    payloads = [b"p%d" % i for i in range(5)]
    for p in payloads:
        r.publish(0.0, p)
    batches = [s.msg.ids for s in r.tick(0.1) if isinstance(s.msg, IHave)]
    assert [len(ids) for ids in batches] == [2, 2, 1]
    assert [i for ids in batches for i in ids] == [message_id(p) for p in payloads]


def test_removed_peer_gets_no_pending_announcement() -> None:
    r = router(peers=PEERS[:2], eager_fanout=0, origin_fanout=0, lazy_fanout=2)
    r.publish(0.0, DATA)
    r.remove_peer(PEERS[0])
    assert list(ihave_ids(r.tick(0.1))) == [PEERS[1]]


def test_ihave_for_a_new_id_asks_the_announcer_once() -> None:
    r = router()
    other = message_id(b"other")
    sends = r.on_ihave(0.0, PEERS[1], (MID, other))
    assert sends == [Send(PEERS[1], IWant(ids=(MID, other)))]
    assert r.on_ihave(0.1, PEERS[2], (MID,)) == [], "already asked"
    r.receive(0.0, PEERS[3], b"seen")
    assert r.on_ihave(0.1, PEERS[2], (message_id(b"seen"),)) == [], "already seen"
    assert r.stats.iwant_sent == 1


def test_iwant_is_answered_from_mcache() -> None:
    r = router()
    r.publish(0.0, DATA)
    unknown = message_id(b"never seen")
    assert r.on_iwant(0.1, PEERS[4], (unknown, MID)) == [Send(PEERS[4], Gossip(data=DATA, hops=1))]
    assert r.stats.iwant_served == 1
    r.tick(MCACHE_TTL - 0.01)
    assert r.on_iwant(MCACHE_TTL - 0.01, PEERS[5], (MID,)) != []
    r.tick(MCACHE_TTL)
    assert r.on_iwant(MCACHE_TTL, PEERS[6], (MID,)) == [], "expired from mcache"


def test_iwant_serves_each_id_once_per_peer_and_is_budgeted() -> None:
    r = router(max_ihave=3)
    r.publish(0.0, DATA)
    assert r.on_iwant(0.1, PEERS[4], (MID,)) != []
    assert r.on_iwant(0.2, PEERS[4], (MID, MID)) == [], "the same peer asking again gets nothing"
    assert r.stats.iwant_refused == 2
    assert r.on_iwant(0.2, PEERS[5], (MID,)) != [], "another peer is served"
    others = [message_id(bytes([i])) for i in range(5)]
    for i in range(5):
        r.publish(0.3, bytes([i]))
    assert len(r.on_iwant(0.4, PEERS[6], tuple(others))) == 3, "at most max_ihave ids per heartbeat"
    r.tick(0.5)
    assert len(r.on_iwant(0.6, PEERS[6], tuple(others[3:]))) == 2, "the rest after the heartbeat"


def test_ihave_is_capped_per_peer_per_heartbeat_and_undelivered_ids_are_broken_promises() -> None:
    r = router(max_ihave=4, iwant_timeout=0.4, iwant_followup=3.0)
    fake = tuple(message_id(bytes([i, 1])) for i in range(10))
    sent = r.on_ihave(0.0, PEERS[1], fake[:6])
    assert sent == [Send(PEERS[1], IWant(ids=fake[:4]))] and r.stats.ihave_dropped == 2
    assert r.on_ihave(0.01, PEERS[1], fake[6:]) == [], "the peer's budget for this heartbeat is spent"
    assert r.take_broken_promises() == {}
    r.tick(0.5)  # past the retry timeout: not judged yet (a reply may be on a long link)
    assert r.take_broken_promises() == {}
    r.tick(2.99)
    assert r.take_broken_promises() == {}
    r.tick(3.0)  # the follow-up time passed and nobody delivered
    assert r.take_broken_promises() == {PEERS[1]: 4}
    assert r.take_broken_promises() == {}
    r.tick(9.0)
    assert r.take_broken_promises() == {}, "judged once"
    delivered = r.on_ihave(10.0, PEERS[2], (MID,))
    assert delivered == [Send(PEERS[2], IWant(ids=(MID,)))]
    assert r.receive(10.1, PEERS[2], DATA)[1]
    r.tick(14.0)
    assert PEERS[2] not in r.take_broken_promises(), "a delivered id is a kept promise"


def test_a_reply_after_the_retry_timeout_is_a_kept_promise_and_a_miss_counts_for_every_peer_asked() -> None:
    r = router(iwant_timeout=0.4, iwant_followup=3.0)
    late = message_id(b"late")
    r.on_ihave(0.0, PEERS[1], (late, MID))
    r.on_ihave(0.1, PEERS[2], (late, MID))
    assert r.tick(0.4) == [Send(PEERS[2], IWant(ids=(late, MID)))], "both retried at the next announcer"
    assert r.receive(1.5, PEERS[1], b"late")[1]  # the first peer's reply, 1.5 s after it was asked
    r.tick(3.0)
    assert r.take_broken_promises() == {PEERS[1]: 1, PEERS[2]: 1}, "MID: nobody delivered it"
    assert r.stats.promises_broken == 2


def test_iwant_retries_the_next_announcer_after_the_timeout() -> None:
    r = router(iwant_timeout=0.4)
    assert r.on_ihave(0.0, PEERS[1], (MID,)) == [Send(PEERS[1], IWant(ids=(MID,)))]
    assert r.on_ihave(0.1, PEERS[2], (MID,)) == []
    assert r.on_ihave(0.2, PEERS[3], (MID,)) == []
    assert r.on_ihave(0.2, PEERS[2], (MID,)) == [], "an announcer is remembered once"
    assert targets(r.tick(0.39), IWant) == [], "not yet overdue"
    assert r.tick(0.4) == [Send(PEERS[2], IWant(ids=(MID,)))]
    assert targets(r.tick(0.6), IWant) == []
    assert r.tick(0.8) == [Send(PEERS[3], IWant(ids=(MID,)))]
    assert r.tick(1.2) == [], "nobody left to ask"
    assert r.tick(5.0) == []
    # A later announcement starts over.
    assert r.on_ihave(6.0, PEERS[4], (MID,)) == [Send(PEERS[4], IWant(ids=(MID,)))]
    assert r.stats.iwant_sent == 4


def test_arrival_cancels_the_retry() -> None:
    r = router(iwant_timeout=0.4)
    r.on_ihave(0.0, PEERS[1], (MID,))
    r.on_ihave(0.1, PEERS[2], (MID,))
    assert r.receive(0.3, PEERS[1], DATA) == (MID, True)
    assert r.tick(0.4) == [] and r.tick(0.8) == []


def test_ihave_and_iwant_are_capped_at_max_ihave_ids() -> None:
    r = router(max_ihave=3)
    ids = tuple(message_id(bytes([i])) for i in range(10))
    (send,) = r.on_ihave(0.0, PEERS[1], ids)
    assert send.msg == IWant(ids=ids[:3])
    payloads = [b"q%d" % i for i in range(5)]
    for p in payloads:
        r.publish(0.0, p)
    served = r.on_iwant(0.0, PEERS[1], tuple(message_id(p) for p in payloads))
    assert [s.msg.data for s in served] == payloads[:3]  # type: ignore[union-attr]


# -- bounded state ------------------------------------------------------------------------------------------
def test_seen_cache_is_bounded_by_size() -> None:
    r = router(seen_cache_size=3)
    payloads = [b"m%d" % i for i in range(5)]
    for i, p in enumerate(payloads):
        r.receive(float(i), PEERS[0], p)
    assert [r.seen(message_id(p)) for p in payloads] == [False, False, True, True, True]
    assert r.receive(10.0, PEERS[0], payloads[0])[1], "an evicted id is new again"


def test_seen_cache_expires_by_ttl() -> None:
    r = router(seen_ttl=10.0)
    r.receive(0.0, PEERS[0], b"old")
    r.receive(5.0, PEERS[0], b"young")
    r.tick(9.99)
    assert r.seen(message_id(b"old")) and r.seen(message_id(b"young"))
    r.tick(10.0)
    assert not r.seen(message_id(b"old")) and r.seen(message_id(b"young"))
    r.tick(15.0)
    assert not r.seen(message_id(b"young"))
    assert r.receive(15.0, PEERS[0], b"old") == (message_id(b"old"), True)


def test_publish_uses_the_wider_origin_fanout() -> None:
    r = router(1, eager_fanout=2, origin_fanout=5, lazy_fanout=0)
    assert len(r.publish(0.0, DATA)) == min(5, len(PEERS))
    r2 = router(1, eager_fanout=2, origin_fanout=5, lazy_fanout=0)
    mid, _ = r2.receive(0.0, PEERS[0], DATA)
    assert len(r2.forward(0.0, mid, DATA, 1)) == 2


def test_full_pushes_go_to_proven_peers_first() -> None:
    """Forty fresh peers beside two proven ones: the eager push goes to the proven ones; the others
    still get the id announced."""
    from p2pnode.core.gossip import GossipParams, GossipRouter
    from p2pnode.wire.messages import Gossip as G
    from p2pnode.wire.types import NodeId as N

    r = GossipRouter(GossipParams(eager_fanout=2, origin_fanout=2, lazy_fanout=64))
    proven = [N(bytes([1, i]) * 16) for i in range(2)]
    fresh = [N(bytes([2, i]) * 16) for i in range(40)]
    for p in fresh + proven:
        r.add_peer(p)
    for p in proven:
        r.prove(p)
    for k in range(20):
        sends = r.publish(float(k), b"payload %d" % k)
        assert sorted(s.peer for s in sends if isinstance(s.msg, G)) == sorted(proven)
    # Each payload was announced to at most lazy_unproven (8) of the forty: 20 x 8 ids in all.
    announced = sum(len(r._pending_ihave.get(p, [])) for p in fresh)
    assert 0 < announced <= 20 * 8


# -- routing by role (docs/gossip.md) ------------------------------------------------------------------------
COMMITTEE = frozenset(PEERS[:4])  # PEERS[0..3] are validators, PEERS[4..9] full nodes


def role_router(me: NodeId, peers: list[NodeId], seed: int = 0) -> GossipRouter:
    r = GossipRouter(GossipParams(eager_fanout=2), rng=random.Random(seed), committee=COMMITTEE, node_id=me)
    for p in peers:
        r.add_peer(p)
    return r


def test_a_validator_sends_its_vote_to_the_committee_only() -> None:
    r = role_router(PEERS[0], PEERS[1:])
    assert not r.bridging()
    sent = targets(r.publish(0.0, DATA, VOTE), Gossip)
    assert sorted(sent) == sorted(PEERS[1:4])
    assert ihave_ids(r.tick(0.1)) == {}  # nothing announced to full nodes either


def test_a_vote_relay_skips_validators_the_signer_is_connected_to() -> None:
    r = role_router(PEERS[1], [PEERS[0], PEERS[2], PEERS[3], *PEERS[4:]])
    r.set_neighbors(PEERS[0], frozenset({PEERS[1], PEERS[2]}))  # the signer lacks a link to PEERS[3]
    r.receive(0.0, PEERS[0], DATA)
    assert targets(r.forward(0.0, MID, DATA, 1, PEERS[0], VOTE), Gossip) == [PEERS[3]]


def test_a_validator_missing_a_committee_link_bridges_through_full_nodes() -> None:
    r = role_router(PEERS[0], [PEERS[1], *PEERS[4:]])  # no direct link to PEERS[2], PEERS[3]
    assert r.bridging()
    sent = targets(r.publish(0.0, DATA, VOTE), Gossip)
    assert sorted(sent) == sorted([PEERS[1], *PEERS[4:]])  # origin_fanout (8) covers all six full nodes


def test_a_full_node_hands_orders_to_its_committee_peers_and_certificates_to_full_nodes() -> None:
    r = role_router(PEERS[5], [PEERS[0], PEERS[2], PEERS[4], PEERS[6], PEERS[7], PEERS[8]])
    assert sorted(targets(r.publish(0.0, DATA, ORDER), Gossip)) == sorted([PEERS[0], PEERS[2]])
    cert = b"certificate"
    r.receive(0.0, PEERS[4], cert)
    pushed = targets(r.forward(0.0, message_id(cert), cert, 1, PEERS[4], CERT), Gossip)
    assert len(pushed) == 2 and not set(pushed) & COMMITTEE and PEERS[4] not in pushed
    announced = ihave_ids(r.tick(0.1))
    assert set(announced) == {PEERS[6], PEERS[7], PEERS[8]} - set(pushed)  # never to the committee


def test_a_full_node_without_committee_peers_passes_orders_on() -> None:
    r = role_router(PEERS[5], PEERS[4:5] + PEERS[6:])
    r.receive(0.0, PEERS[4], DATA)
    sent = targets(r.forward(0.0, MID, DATA, 1, PEERS[4], ORDER), Gossip)
    assert len(sent) == 2 and PEERS[4] not in sent


def test_a_certificate_is_announced_to_validators_whose_vote_is_missing() -> None:
    r = role_router(PEERS[0], PEERS[1:])
    pushed = targets(r.publish(0.0, DATA, CERT, skip=frozenset({PEERS[1], PEERS[2]})), Gossip)
    assert len(pushed) == 2 and not set(pushed) & COMMITTEE
    announced = ihave_ids(r.tick(0.1))
    assert PEERS[3] in announced and PEERS[1] not in announced and PEERS[2] not in announced


def test_an_announcement_is_dropped_for_a_peer_that_delivered_the_id_meanwhile() -> None:
    r = router(peers=PEERS[:3], eager_fanout=1, origin_fanout=1)
    r.publish(0.0, DATA)
    r.receive(0.05, PEERS[1], DATA)
    r.receive(0.05, PEERS[2], DATA)
    assert ihave_ids(r.tick(0.1)) == {}


def test_an_id_taken_in_another_way_is_a_kept_promise() -> None:
    """Asked for by IWANT, then published here (a validator assembling the certificate itself) or
    taken in by anti-entropy: not wanted any more, no retry, and the peer asked is not blamed when
    its copy comes as a duplicate or not at all."""
    r = router(iwant_timeout=0.4, iwant_followup=3.0)
    other = message_id(b"other")
    r.on_ihave(0.0, PEERS[1], (MID, other))
    r.on_ihave(0.1, PEERS[2], (MID, other))
    r.publish(0.2, DATA)
    r.note_seen(0.2, b"other")
    assert targets(r.tick(0.5), IWant) == [], "nothing left to ask for"
    assert r.receive(0.6, PEERS[1], DATA)[1] is False  # the reply, a duplicate now
    r.tick(3.5)
    assert r.take_broken_promises() == {}


def test_a_validator_pushes_the_certificate_first_to_the_node_that_gave_it_the_order() -> None:
    """The order's origin (its client waits there) takes one of the eager_fanout pushes, whatever the
    shuffle; the number of pushes is unchanged. A committee peer or one known to hold it is no
    candidate."""
    for seed in range(20):
        r = role_router(PEERS[0], PEERS[1:], seed=seed)
        pushed = targets(r.publish(0.0, DATA, CERT, first=PEERS[9]), Gossip)
        assert len(pushed) == 2 and PEERS[9] in pushed and not set(pushed) & COMMITTEE
    r = role_router(PEERS[0], PEERS[1:])
    assert PEERS[1] not in targets(r.publish(0.0, DATA, CERT, first=PEERS[1]), Gossip)
    r = role_router(PEERS[0], PEERS[1:])
    r.note_has(MID, PEERS[9])
    assert PEERS[9] not in targets(r.publish(0.0, DATA, CERT, first=PEERS[9]), Gossip)
