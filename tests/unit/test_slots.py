"""The blocked-slot rule: no order of a slot can still reach the quorum (p2pnode/core/slots.py)."""

from __future__ import annotations

import pytest

from p2pnode.core.committee import Committee
from p2pnode.core.slots import SlotWatch
from p2pnode.wire.types import Digest

VALIDATORS = [bytes([i]) * 32 for i in range(1, 8)]
SLOT = (b"\xaa" * 20, 3)
A, B, C = (Digest(bytes([x]) * 32) for x in (0xA1, 0xB2, 0xC3))


def watch(n: int) -> SlotWatch:
    return SlotWatch(Committee.of(VALIDATORS[:n]), limit=8)


@pytest.mark.parametrize(
    ("n", "votes", "blocked"),
    [
        # N=4, q=3: a 2+2 split can never finish; 2+1 with one undecided still can.
        (4, {A: 2, B: 2}, True),
        (4, {A: 2, B: 1}, False),
        (4, {A: 3, B: 1}, False),  # A has its quorum (its certificate settles the slot)
        (4, {A: 1, B: 1, C: 1}, True),  # 1 + 1 undecided = 2 < 3 for every order
        (4, {A: 1, B: 1, C: 2}, True),
        (4, {A: 2}, False),  # one order is no conflict
        # N=7, q=5: 3+3 with one undecided: 3 + 1 < 5.
        (7, {A: 3, B: 3}, True),
        (7, {A: 4, B: 2}, False),
        (7, {A: 3, B: 2}, False),
    ],
)
def test_blocked_exactly_when_no_order_can_reach_the_quorum(
    n: int, votes: dict[Digest, int], blocked: bool
) -> None:
    w = watch(n)
    voters: dict[Digest, list[bytes]] = {}
    it = iter(VALIDATORS[:n])
    for d, count in votes.items():
        voters[d] = [next(it) for _ in range(count)]
        w.add_order(d, [SLOT])
    committee = Committee.of(VALIDATORS[:n])
    undecided = n - sum(votes.values())
    expected = len(votes) >= 2 and max(votes.values()) + undecided < committee.quorum
    assert expected == blocked  # the table agrees with the rule as the module states it
    found = w.check(A, lambda d: voters.get(d, []))
    assert bool(found) == blocked
    assert bool(w.reason(SLOT)) == blocked
    if blocked:
        (record,) = found
        assert record.slot == SLOT and {d for d, _ in record.orders} == set(votes)
        assert record.reason().startswith("blocked: account " + SLOT[0].hex() + " seq 3")
        assert w.check(A, lambda d: voters.get(d, [])) == []  # reported once


def test_a_validator_voting_twice_counts_once_as_decided() -> None:
    w = watch(4)
    w.add_order(A, [SLOT])
    w.add_order(B, [SLOT])
    v = VALIDATORS
    # v0 equivocates (votes for both); v1 for A, v2 for B; v3 undecided: A could still get 2 + 1 = 3.
    voters = {A: [v[0], v[1]], B: [v[0], v[2]]}
    assert w.check(A, lambda d: voters[d]) == []


def test_clear_forgets_a_settled_slot_and_bounds_hold() -> None:
    w = watch(4)
    voters = {A: VALIDATORS[:2], B: VALIDATORS[2:4]}
    w.add_order(A, [SLOT])
    w.add_order(B, [SLOT])
    assert w.check(B, lambda d: voters[d])
    w.clear([SLOT])
    assert not w.blocked and w.slots_of(A) == () and w.reason(SLOT) == ""
    for i in range(50):
        w.add_order(Digest(i.to_bytes(32, "big")), [(b"\x01" * 20, i)])
    assert len(w._orders) <= w.limit
