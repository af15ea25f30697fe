"""The order and size of proof verification batches (``choose_batch``, ``VerifyQueue``): untrusted
work comes in small batches, and between two of them every trusted lane and the certificates go."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from p2pnode.core.budget import (
    CERTIFICATES,
    SUSPECT_BATCH,
    Lane,
    ProofBudget,
    Trust,
    VerifyQueue,
    choose_batch,
)

C, T, N, S = Trust.CERT, Trust.TRUSTED, Trust.NEW, Trust.SUSPECT


@pytest.mark.parametrize(
    ("lanes", "expected"),
    [
        ([], None),
        ([Lane(N, False)], (0, 4)),
        ([Lane(S, False)], (0, SUSPECT_BATCH)),
        ([Lane(T, False)], (0, 64)),
        ([Lane(T, True)], (0, 64)),  # nothing untrusted waits: a new round
        ([Lane(S, False), Lane(T, False), Lane(C, False)], (2, 64)),  # certificates first
        ([Lane(S, False), Lane(N, False), Lane(T, False)], (2, 64)),  # then trusted lanes
        ([Lane(T, True), Lane(S, False), Lane(N, False)], (2, 4)),  # served: untrusted, new first
        ([Lane(T, True), Lane(S, False)], (1, SUSPECT_BATCH)),
        ([Lane(T, True), Lane(T, False)], (1, 64)),  # round robin among trusted lanes
        ([Lane(N, False), Lane(N, False)], (0, 4)),  # first in round-robin order
    ],
)
def test_choose_batch(lanes: list[Lane], expected: tuple[int, int] | None) -> None:
    assert choose_batch(lanes, batch_max=64, new_batch=4) == expected


def test_new_batch_never_exceeds_batch_max() -> None:
    assert choose_batch([Lane(N, False)], batch_max=2, new_batch=8) == (0, 2)


def run(q: VerifyQueue[tuple[str, int]], trust: dict[Hashable, Trust]) -> list[tuple[str, int]]:
    """Drain the queue; returns (lane, batch size) in the order verified."""
    out = []
    while len(q):
        _, batch, _ = q.take(lambda lane: trust[lane], lambda i: True, lambda i: i[0])
        out.append((batch[0][0], len(batch)))
        assert {lane for lane, _ in batch} == {batch[0][0]}  # one lane per batch
    return out


def test_an_honest_proof_waits_for_at_most_one_small_untrusted_batch() -> None:
    q: VerifyQueue[tuple[str, int]] = VerifyQueue(batch_max=64, new_batch=4)
    for i in range(64):
        q.push("attacker", ("attacker", i))
    trust: dict[Hashable, Trust] = {"attacker": N, "relay": T, "client": N, CERTIFICATES: C}
    _, first, _ = q.take(lambda lane: trust[lane], lambda i: True, lambda i: i[0])
    assert len(first) == 4  # a new source: a small batch, never 64 to bisect
    trust["attacker"] = S  # its batch was invalid
    q.push("relay", ("relay", 0))
    q.push("client", ("client", 0))
    q.push(CERTIFICATES, (CERTIFICATES, 0))  # type: ignore[arg-type]
    order = run(q, trust)
    assert order[:3] == [(CERTIFICATES, 1), ("relay", 1), ("client", 1)]
    assert order[3:] == [("attacker", 1)] * 60


def test_untrusted_batches_are_interleaved_with_every_trusted_lane() -> None:
    q: VerifyQueue[tuple[str, int]] = VerifyQueue(batch_max=2, new_batch=1)
    for i in range(4):
        for lane in ("a", "b", "bad"):
            q.push(lane, (lane, i))
    order = run(q, {"a": T, "b": T, "bad": S})
    assert order == [("a", 2), ("b", 2), ("bad", 1), ("a", 2), ("b", 2), ("bad", 1), ("bad", 1), ("bad", 1)]


def test_unwanted_items_are_skipped_and_moved_items_follow_their_lane() -> None:
    q: VerifyQueue[tuple[str, int]] = VerifyQueue(batch_max=8, new_batch=2)
    for i in range(5):
        q.push("banned", ("banned", i))
    # The banned source's work is no longer wanted, except item 3, which an honest source wants too.
    home = {("banned", 3): "honest"}
    wanted = {("banned", 3)}
    trust: dict[Hashable, Trust] = {"banned": N, "honest": T}
    lane, batch, skipped = q.take(lambda k: trust[k], lambda i: i in wanted, lambda i: home.get(i, i[0]))
    assert (lane, batch, skipped) == (T, [("banned", 3)], 4)
    assert len(q) == 0
    assert q.compact(lambda i: True) == 0


def test_compact_drops_unwanted() -> None:
    q: VerifyQueue[int] = VerifyQueue(batch_max=8, new_batch=2)
    for i in range(6):
        q.push(i % 2, i)
    assert q.compact(lambda i: i % 2 == 0) == 3 and len(q) == 3


def test_trust_of_a_source() -> None:
    p = ProofBudget(rate=1.0, burst=4.0, trusted_s=60.0)
    assert p.trust("a", 0.0) == Trust.NEW
    p.on_good("a", 0.0)
    assert p.trust("a", 1.0) == Trust.TRUSTED
    p.on_bad("a", 1.0)
    assert p.trust("a", 2.0) == Trust.SUSPECT  # an invalid proof outweighs earlier valid ones
    assert p.trust("a", 6.0) == Trust.TRUSTED  # the mark is older than a window (burst / rate)
    assert p.trust("a", 61.0) == Trust.NEW
    p.prune(61.0)
    assert len(p) == 0  # trust is forgotten too: bounded
