"""Quorum arithmetic: the table for small committees and the two properties that safety and liveness
rest on (any two quorums share an honest validator; the honest validators alone form a quorum)."""

from __future__ import annotations

import itertools

import pytest

from p2pnode.core.committee import Committee, max_faulty, quorum

# Derived by hand: f is the largest f with N >= 3f + 1; q = 2N // 3 + 1. That q is not always the
# smallest safe one (N = 6 would be safe with q = 4); the properties below are what must hold.
TABLE = {
    1: (0, 1),
    2: (0, 2),
    3: (0, 3),
    4: (1, 3),
    5: (1, 4),
    6: (1, 5),
    7: (2, 5),
    8: (2, 6),
    9: (2, 7),
    10: (3, 7),
}


@pytest.mark.parametrize(("n", "f", "q"), [(n, f, q) for n, (f, q) in TABLE.items()])
def test_table(n: int, f: int, q: int) -> None:
    assert max_faulty(n) == f
    assert quorum(n) == q
    committee = Committee.of(bytes([i]) * 32 for i in range(n))
    assert (committee.size, committee.f, committee.quorum) == (n, f, q)


@pytest.mark.parametrize("n", range(1, 101))
def test_quorums_intersect_in_an_honest_validator_and_are_live(n: int) -> None:
    f, q = max_faulty(n), quorum(n)
    assert n >= 3 * f + 1, "f is tolerable"
    assert n < 3 * (f + 1) + 1, "f is the largest tolerable"
    assert 2 * q - n > f, "two quorums overlap in more than f validators"
    assert n - f >= q, "the honest validators alone reach a quorum"
    assert q <= n


@pytest.mark.parametrize("n", range(1, 8))
def test_quorum_intersection_by_enumeration(n: int) -> None:
    """The arithmetic above, checked by brute force on every pair of quorums of a small committee."""
    f, q = max_faulty(n), quorum(n)
    quorums = [set(c) for c in itertools.combinations(range(n), q)]
    assert min(len(a & b) for a in quorums for b in quorums) > f


@pytest.mark.parametrize("fn", [max_faulty, quorum])
@pytest.mark.parametrize("n", [0, -1])
def test_empty_committee_is_refused(fn: object, n: int) -> None:
    with pytest.raises(ValueError):
        fn(n)  # type: ignore[operator]


def test_committee_is_sorted_and_refuses_duplicates() -> None:
    ids = [bytes([i]) * 32 for i in (3, 1, 2)]
    committee = Committee.of(ids)
    assert committee.members == tuple(sorted(ids))
    assert all(m in committee for m in ids)
    assert bytes(32) not in committee
    with pytest.raises(ValueError, match="duplicate"):
        Committee.of([ids[0], ids[0]])


def test_is_quorum_counts_distinct_members_only() -> None:
    ids = [bytes([i]) * 32 for i in range(4)]  # q = 3
    committee = Committee.of(ids)
    outsider = b"\xff" * 32
    assert committee.is_quorum(ids[:3])
    assert committee.is_quorum(ids)
    assert not committee.is_quorum(ids[:2])
    assert not committee.is_quorum([ids[0], ids[0], ids[1]])
    assert not committee.is_quorum([ids[0], ids[1], outsider])
