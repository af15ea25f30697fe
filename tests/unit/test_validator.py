"""The validator role, in the spirit of FastPay's authority tests: every check has its typed error, a
failed check changes nothing, handling is idempotent, and honest validators never let two conflicting
orders both reach a quorum."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from p2pnode.core.batches import batch_digest, root
from p2pnode.core.certificates import VoteBook, check_certificate
from p2pnode.core.committee import Committee
from p2pnode.core.ledger import InsufficientFunds, Ledger, SeqTooHigh, SeqTooLow, UnknownSender
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.core.validator import (
    BadProof,
    ConflictingLock,
    KeyMismatch,
    Validator,
    WrongChain,
    ZeroAmount,
)
from p2pnode.crypto import NodeKey, SpendingKey, ed25519_verify
from p2pnode.testing.faults.validators import VALIDATORS
from p2pnode.wire.messages import Order
from p2pnode.wire.types import ChainId

CHAIN = ChainId(b"\x01" * 32)
OTHER_CHAIN = ChainId(b"\x02" * 32)
ALICE = SpendingKey(1001)
BOB = SpendingKey(1002)
STRANGER = SpendingKey(1003)  # never funded
CAROL_ADDR = b"\xcc" * 20
GENESIS = {ALICE.address: 100, BOB.address: 50}


def validator_key(i: int) -> NodeKey:
    return NodeKey.from_seed(bytes([i + 1]) * 32)


def new_validator(i: int = 0, byzantine: str = "") -> Validator:
    cls = VALIDATORS[byzantine] if byzantine else Validator
    return cls(validator_key(i), CHAIN, Ledger(dict(GENESIS)))


def snapshot(v: Validator) -> tuple[object, ...]:
    accounts = {a: (acct.balance, acct.next_seq) for a, acct in v.ledger.accounts.items()}
    return dict(v.locks), set(v.durable), accounts, dict(v.ledger.applied), v.ledger.root()


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.fixture
def validator() -> Validator:
    return new_validator()


def test_valid_order_gets_a_vote_that_verifies(validator: Validator) -> None:
    order = make_order(ALICE, CHAIN, BOB.address, 10, 0)
    digest = transfer_digest(order.transfer)
    vote = validator.handle_order(order)
    assert vote.digests == (digest,)
    assert vote.validator == validator_key(0).public
    assert ed25519_verify(vote.validator, vote.signature, batch_digest(CHAIN, root((digest,))))
    assert not ed25519_verify(vote.validator, vote.signature, batch_digest(OTHER_CHAIN, root((digest,))))
    assert validator.locks == {(ALICE.address, 0): digest}
    # Voting moves no money: only a certificate does.
    assert validator.ledger.account(ALICE.address).balance == 100  # type: ignore[union-attr]


def _bad_proof(order: Order) -> Order:
    return replace(order, proof=flip(order.proof, len(order.proof) - 1))


def _bad_proof_in_r(order: Order) -> Order:
    return replace(order, proof=flip(order.proof, 0))


def _proof_moved(order: Order) -> Order:
    other = replace(order.transfer, amount=order.transfer.amount + 1)
    return replace(order, transfer=other)


def _zero(order: Order) -> Order:
    return make_order(ALICE, CHAIN, BOB.address, 0, 0)


def _unknown_sender(order: Order) -> Order:
    return make_order(STRANGER, CHAIN, BOB.address, 10, 0)


def _key_of_other_account(order: Order) -> Order:
    # Bob's key (and a valid proof by Bob) on a transfer that debits Alice.
    return replace(order, sender_key=BOB.public, proof=BOB.prove(transfer_digest(order.transfer)))


def _wrong_chain(order: Order) -> Order:
    return make_order(ALICE, OTHER_CHAIN, BOB.address, 10, 0)


def _seq_too_high(order: Order) -> Order:
    return make_order(ALICE, CHAIN, BOB.address, 10, 1)


def _overspend(order: Order) -> Order:
    return make_order(ALICE, CHAIN, BOB.address, 101, 0)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (_bad_proof, BadProof),
        (_bad_proof_in_r, BadProof),
        (_proof_moved, BadProof),
        (_zero, ZeroAmount),
        (_unknown_sender, UnknownSender),
        (_key_of_other_account, KeyMismatch),
        (_wrong_chain, WrongChain),
        (_seq_too_high, SeqTooHigh),
        (_overspend, InsufficientFunds),
    ],
    ids=lambda x: getattr(x, "__name__", "").lstrip("_"),
)
def test_refused_order_raises_its_error_and_changes_nothing(
    validator: Validator, mutate: object, error: type[Exception]
) -> None:
    good = make_order(ALICE, CHAIN, BOB.address, 10, 0)
    bad = mutate(good)  # type: ignore[operator]
    before = snapshot(validator)
    with pytest.raises(error):
        validator.handle_order(bad)
    assert snapshot(validator) == before
    assert validator.locks == {}
    # Nothing was locked: the honest order for the same (sender, seq) is still votable.
    assert validator.handle_order(good).digests == (transfer_digest(good.transfer),)


def test_seq_too_low_after_a_transfer_applied(validator: Validator) -> None:
    first = make_order(ALICE, CHAIN, BOB.address, 10, 0)
    validator.ledger.apply(first.transfer, transfer_digest(first.transfer))
    validator.release(ALICE.address, 0)
    before = snapshot(validator)
    with pytest.raises(SeqTooLow) as info:
        validator.handle_order(make_order(ALICE, CHAIN, BOB.address, 20, 0))
    assert (info.value.seq, info.value.expected) == (0, 1)
    assert snapshot(validator) == before
    # The next seq is open, against the reduced balance.
    with pytest.raises(InsufficientFunds):
        validator.handle_order(make_order(ALICE, CHAIN, BOB.address, 91, 1))
    validator.handle_order(make_order(ALICE, CHAIN, BOB.address, 90, 1))


def test_insufficient_funds_carries_its_facts(validator: Validator) -> None:
    with pytest.raises(InsufficientFunds) as info:
        validator.handle_order(make_order(ALICE, CHAIN, BOB.address, 101, 0))
    assert info.value.balance == 100
    assert info.value.amount == 101
    assert str(info.value) == "insufficient funds: balance 100, amount 101"
    # The whole balance is spendable.
    validator.handle_order(make_order(ALICE, CHAIN, BOB.address, 100, 0))


def test_replay_returns_the_same_vote(validator: Validator) -> None:
    order = make_order(ALICE, CHAIN, BOB.address, 10, 0)
    first = validator.handle_order(order)
    before = snapshot(validator)
    second = validator.handle_order(order)
    assert second == first
    assert second.encode() == first.encode()
    assert snapshot(validator) == before


def test_replay_with_a_fresh_proof_returns_the_same_vote(validator: Validator) -> None:
    # Proofs are randomized, so a wallet that re-signs the same transfer produces different order bytes;
    # the lock is on the transfer digest, so it is the same order for the validator.
    first = validator.handle_order(make_order(ALICE, CHAIN, BOB.address, 10, 0))
    again = make_order(ALICE, CHAIN, BOB.address, 10, 0)
    assert validator.handle_order(again) == first


def test_payer_equivocation_is_refused_by_an_honest_validator(validator: Validator) -> None:
    to_bob = make_order(ALICE, CHAIN, BOB.address, 10, 0)
    to_carol = make_order(ALICE, CHAIN, CAROL_ADDR, 10, 0)
    vote = validator.handle_order(to_bob)
    before = snapshot(validator)
    with pytest.raises(ConflictingLock) as info:
        validator.handle_order(to_carol)
    assert info.value.locked == transfer_digest(to_bob.transfer)
    assert snapshot(validator) == before
    assert validator.handle_order(to_bob) == vote


def test_lock_check_comes_before_the_proof(validator: Validator) -> None:
    """A conflicting order is refused as such even with a broken proof: cheap checks run first."""
    validator.handle_order(make_order(ALICE, CHAIN, BOB.address, 10, 0))
    with pytest.raises(ConflictingLock):
        validator.handle_order(_bad_proof(make_order(ALICE, CHAIN, CAROL_ADDR, 10, 0)))


def test_equivocating_validator_votes_for_both() -> None:
    """The test-only Byzantine mode really does what the safety test below relies on."""
    v = new_validator(byzantine="equivocate")
    a = v.handle_order(make_order(ALICE, CHAIN, BOB.address, 10, 0))
    b = v.handle_order(make_order(ALICE, CHAIN, CAROL_ADDR, 10, 0))
    assert a.digests != b.digests


# -- at most one certificate per (sender, seq) -----------------------------------------------------------
N_VALIDATORS = 4
COMMITTEE = Committee.of(validator_key(i).public for i in range(N_VALIDATORS))
CONFLICTING = (
    make_order(ALICE, CHAIN, BOB.address, 10, 0),
    make_order(ALICE, CHAIN, CAROL_ADDR, 10, 0),
)
DELIVERIES = [(v, o) for v in range(N_VALIDATORS) for o in range(len(CONFLICTING))]


def deliver(sequence: tuple[tuple[int, int], ...], byzantine: int | None) -> dict[int, list[object]]:
    """Deliver each (validator, order) in ``sequence`` to fresh validators; the votes per order."""
    validators = [
        new_validator(i, byzantine="equivocate" if i == byzantine else "") for i in range(N_VALIDATORS)
    ]
    votes: dict[int, list[object]] = {o: [] for o in range(len(CONFLICTING))}
    for v, o in sequence:
        try:
            votes[o].append(validators[v].handle_order(CONFLICTING[o]))
        except ConflictingLock:
            assert v != byzantine
    return votes


@pytest.mark.parametrize("byzantine", [None, 0, 1, 2, 3], ids=lambda b: f"byzantine={b}")
def test_at_most_one_order_reaches_a_quorum_in_every_delivery_order(byzantine: int | None) -> None:
    assert COMMITTEE.quorum == 3 and COMMITTEE.f == 1
    # Validators share no state, so an interleaving's outcome is fixed by the order in which each
    # validator sees the two orders. Each such class is simulated once, from its first permutation.
    outcomes: dict[tuple[tuple[int, ...], ...], dict[int, list[object]]] = {}
    certified_somewhere = 0
    for sequence in itertools.permutations(DELIVERIES):
        per_validator = tuple(tuple(o for w, o in sequence if w == v) for v in range(N_VALIDATORS))
        votes = outcomes.get(per_validator)
        if votes is None:
            votes = outcomes[per_validator] = deliver(sequence, byzantine)
        certified = [o for o, vs in votes.items() if len(vs) >= COMMITTEE.quorum]
        assert len(certified) <= 1, f"two certificates for one (sender, seq) after {sequence}"
        certified_somewhere += len(certified)
    assert len(outcomes) == 2**N_VALIDATORS
    assert certified_somewhere > 0

    # A quorum that did form assembles into a certificate every node accepts.
    for votes in outcomes.values():
        for o, vs in votes.items():
            if len(vs) < COMMITTEE.quorum:
                continue
            order = CONFLICTING[o]
            digest = transfer_digest(order.transfer)
            book = VoteBook(CHAIN, COMMITTEE)
            assert all(book.add(vote) for vote in vs)  # type: ignore[arg-type]
            cert = book.assemble(order, digest)
            assert cert is not None
            assert check_certificate(VoteBook(CHAIN, COMMITTEE), cert, digest) is None
