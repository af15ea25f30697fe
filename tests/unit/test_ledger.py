"""The ledger: application rules, u64 bounds, and the state root as a function of the applied set."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.core.ledger import (
    EMPTY_ROOT,
    LEAF,
    NODE,
    BalanceOverflow,
    InsufficientFunds,
    Ledger,
    LedgerError,
    SeqTooHigh,
    SeqTooLow,
    UnknownSender,
)
from p2pnode.crypto import hash256
from p2pnode.wire.messages import Transfer
from p2pnode.wire.types import U64_MAX, Address, Amount, ChainId, Digest, Seq

CHAIN = ChainId(b"\x01" * 32)


def addr(i: int) -> Address:
    return Address(i.to_bytes(20, "big"))


A, B, C = addr(0xA), addr(0xB), addr(0xC)


def transfer(sender: bytes, recipient: bytes, amount: int, seq: int) -> Transfer:
    return Transfer(
        chain_id=CHAIN,
        sender=Address(sender),
        recipient=Address(recipient),
        amount=Amount(amount),
        seq=Seq(seq),
    )


def fake_digest(t: Transfer) -> Digest:
    return Digest(hash256(b"test/digest", t.encode()))


def state(ledger: Ledger) -> tuple[object, ...]:
    accounts = {a: (x.balance, x.next_seq) for a, x in ledger.accounts.items()}
    return accounts, dict(ledger.applied), ledger.root()


def reference_root(ledger: Ledger) -> bytes:
    """The root as the module docstring defines it, computed from scratch."""
    if not ledger.accounts:
        return EMPTY_ROOT
    level = [
        hash256(LEAF, a, x.balance.to_bytes(8, "big"), x.next_seq.to_bytes(8, "big"))
        for a, x in sorted(ledger.accounts.items())
    ]
    while len(level) > 1:
        pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [hash256(NODE, *p) if len(p) == 2 else p[0] for p in pairs]
    return level[0]


def recomputed_root(ledger: Ledger) -> bytes:
    """The root of a second ledger restored with the same accounts."""
    fresh = Ledger()
    fresh.restore({a: (x.balance, x.next_seq) for a, x in ledger.accounts.items()}, dict(ledger.applied))
    return fresh.root()


def test_apply_debits_credits_and_advances_seq() -> None:
    ledger = Ledger({A: 100, B: 5})
    t = transfer(A, B, 30, 0)
    ledger.apply(t, fake_digest(t))
    assert (ledger.accounts[A].balance, ledger.accounts[A].next_seq) == (70, 1)
    assert (ledger.accounts[B].balance, ledger.accounts[B].next_seq) == (35, 0)
    assert ledger.applied == {(A, 0): fake_digest(t)}
    assert ledger.total_supply() == 105
    assert ledger.heads() == [(A, 1)]
    assert ledger.applied_count() == 1


def test_new_recipient_is_created() -> None:
    ledger = Ledger({A: 100})
    assert ledger.account(C) is None and ledger.next_seq(C) == 0
    t = transfer(A, C, 40, 0)
    ledger.apply(t, fake_digest(t))
    acct = ledger.account(C)
    assert acct is not None and (acct.balance, acct.next_seq) == (40, 0)
    # The new account can spend what it received.
    t2 = transfer(C, A, 40, 0)
    ledger.apply(t2, fake_digest(t2))
    assert ledger.accounts[C].balance == 0 and ledger.accounts[A].balance == 100
    assert ledger.root() == reference_root(ledger)


def test_self_transfer_only_advances_seq() -> None:
    ledger = Ledger({A: U64_MAX})
    t = transfer(A, A, U64_MAX, 0)
    ledger.apply(t, fake_digest(t))
    assert (ledger.accounts[A].balance, ledger.accounts[A].next_seq) == (U64_MAX, 1)


def test_credit_up_to_u64_max_and_overflow_beyond() -> None:
    ledger = Ledger({A: 10, B: U64_MAX - 6})
    over = transfer(A, B, 7, 0)
    before = state(ledger)
    with pytest.raises(BalanceOverflow) as info:
        ledger.apply(over, fake_digest(over))
    assert (info.value.balance, info.value.amount) == (U64_MAX - 6, 7)
    assert state(ledger) == before
    exact = transfer(A, B, 6, 0)
    ledger.apply(exact, fake_digest(exact))
    assert ledger.accounts[B].balance == U64_MAX
    assert ledger.root() == reference_root(ledger)


@pytest.mark.parametrize(
    ("t", "error"),
    [
        (transfer(C, A, 1, 0), UnknownSender),
        (transfer(A, B, 1, 0), SeqTooLow),
        (transfer(A, B, 1, 2), SeqTooHigh),
        (transfer(A, B, 91, 1), InsufficientFunds),
    ],
    ids=["unknown-sender", "seq-too-low", "seq-too-high", "insufficient-funds"],
)
def test_refused_transfer_changes_nothing(t: Transfer, error: type[LedgerError]) -> None:
    ledger = Ledger({A: 100, B: 0})
    first = transfer(A, B, 10, 0)
    ledger.apply(first, fake_digest(first))
    before = state(ledger)
    with pytest.raises(error):
        ledger.apply(t, fake_digest(t))
    assert state(ledger) == before


def test_insufficient_funds_facts() -> None:
    ledger = Ledger({A: 100})
    with pytest.raises(InsufficientFunds) as info:
        ledger.check(transfer(A, B, 101, 0))
    assert (info.value.balance, info.value.amount) == (100, 101)
    assert str(info.value) == "insufficient funds: balance 100, amount 101"


def test_root_changes_with_state() -> None:
    assert Ledger().root() == EMPTY_ROOT
    ledger = Ledger({A: 100, B: 0})
    roots = {ledger.root()}
    for seq in range(3):
        t = transfer(A, B, 1, seq)
        ledger.apply(t, fake_digest(t))
        roots.add(ledger.root())
    t = transfer(A, C, 1, 3)  # a new account
    ledger.apply(t, fake_digest(t))
    roots.add(ledger.root())
    assert len(roots) == 5


@pytest.mark.parametrize("seed", range(5))
def test_incremental_root_matches_recomputation(seed: int) -> None:
    rng = random.Random(seed)
    genesis = {addr(i): rng.randrange(0, 1_000) for i in range(1, rng.randrange(2, 12))}
    ledger = Ledger(genesis)
    for _ in range(200):
        sender = rng.choice(sorted(a for a, x in ledger.accounts.items() if x.balance > 0))
        # Mostly existing accounts, sometimes a new one (which rebuilds the tree).
        recipient = (
            rng.choice(sorted(ledger.accounts)) if rng.random() < 0.9 else addr(rng.randrange(1 << 32))
        )
        t = transfer(
            sender, recipient, rng.randrange(1, ledger.accounts[sender].balance + 1), ledger.next_seq(sender)
        )
        ledger.apply(t, fake_digest(t))
        if rng.random() < 0.5:  # sometimes several updates between two root computations
            assert ledger.root() == reference_root(ledger)
    assert ledger.root() == recomputed_root(ledger) == reference_root(ledger)


# -- the root is a function of the applied set ------------------------------------------------------------
N_GENESIS = 4


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[Address, int], list[Transfer]]:
    """A genesis and a sequence of transfers that is valid when applied in order."""
    big = st.integers(0, U64_MAX // (2 * N_GENESIS))
    genesis = {addr(i): draw(st.one_of(st.integers(0, 50), big)) for i in range(N_GENESIS)}
    ledger = Ledger(genesis)
    universe = [addr(i) for i in range(N_GENESIS + 2)]  # two accounts created by the history
    out: list[Transfer] = []
    for _ in range(draw(st.integers(0, 25))):
        funded = sorted(a for a, x in ledger.accounts.items() if x.balance > 0)
        if not funded:
            break
        sender = draw(st.sampled_from(funded))
        recipient = draw(st.sampled_from(universe))
        amount = draw(st.integers(1, ledger.accounts[sender].balance))
        t = transfer(sender, recipient, amount, ledger.next_seq(sender))
        ledger.apply(t, fake_digest(t))
        out.append(t)
    return genesis, out


@settings(max_examples=50, deadline=None)
@given(histories(), st.lists(st.randoms(use_true_random=False), min_size=1, max_size=3))
def test_root_is_independent_of_application_order(
    history: tuple[dict[Address, int], list[Transfer]], shufflers: list[random.Random]
) -> None:
    genesis, transfers = history
    sequential = Ledger(genesis)
    for t in transfers:
        sequential.apply(t, fake_digest(t))
    assert sequential.root() == reference_root(sequential)

    for rng in shufflers:
        remaining = list(transfers)
        rng.shuffle(remaining)
        ledger = Ledger(genesis)
        while remaining:
            held = []
            for t in remaining:
                try:
                    ledger.apply(t, fake_digest(t))
                except (SeqTooHigh, InsufficientFunds, UnknownSender):
                    # An account the history creates is unknown until its first credit applies.
                    held.append(t)
                # Interleave root computations so the incremental path is exercised mid-way.
                if rng.random() < 0.3:
                    ledger.root()
            assert len(held) < len(remaining), "a valid certificate set must always make progress"
            remaining = held
        assert ledger.root() == sequential.root()
        assert ledger.applied == sequential.applied
        assert state(ledger) == state(sequential)
