"""Batch-signed votes: the Merkle tree, paths, and certificates carrying them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pnode.core.batches import MAX_DEPTH, PathError, batch_digest, leaf, levels, path, root, root_from_path
from p2pnode.core.certificates import VoteBook, check_certificate
from p2pnode.core.committee import Committee
from p2pnode.core.ledger import Ledger
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.core.validator import Validator
from p2pnode.crypto import NodeKey, SpendingKey, address_of, ed25519_verify
from p2pnode.wire.messages import Certificate, Vote
from p2pnode.wire.types import ChainId, Digest, NodeId

CHAIN = ChainId(b"\x01" * 32)
KEYS = [NodeKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
COMMITTEE = Committee.of(k.public for k in KEYS)
PAYER = SpendingKey.from_bytes((7).to_bytes(32, "big"))
PAYEE = address_of(SpendingKey.from_bytes((8).to_bytes(32, "big")).public)


def digests(n: int) -> list[bytes]:
    return [bytes([i % 256, i // 256]) * 16 for i in range(n)]


@given(st.integers(min_value=1, max_value=70))
def test_every_leaf_path_leads_to_the_root(n: int) -> None:
    ds = digests(n)
    tree = levels(ds)
    r = tree[-1][0]
    assert r == root(ds)
    for i, d in enumerate(ds):
        assert root_from_path(d, i, path(tree, i)) == r


def test_a_path_proves_only_its_own_digest_and_position() -> None:
    ds = digests(5)
    tree = levels(ds)
    r = tree[-1][0]
    assert root_from_path(ds[2], 3, path(tree, 2)) != r  # right digest, wrong index
    assert root_from_path(ds[3], 2, path(tree, 2)) != r  # another digest of the batch at 2's path
    assert root_from_path(b"\xee" * 32, 2, path(tree, 2)) != r
    # An inner node is never taken for a leaf (domain-separated hashing): the two children of the
    # root, offered as a "digest" with the rest of a path, do not lead to the root.
    assert root_from_path(tree[1][0], 0, path(tree, 0)[1:]) != r


def test_a_batch_of_one_is_its_leaf_and_has_an_empty_path() -> None:
    d = b"\x42" * 32
    assert root([d]) == leaf(d)
    assert path(levels([d]), 0) == ()
    assert root_from_path(d, 0, ()) == leaf(d)


def test_malformed_paths_are_refused() -> None:
    with pytest.raises(PathError):
        root_from_path(b"\x00" * 32, 0, (b"\x00" * 32,) * (MAX_DEPTH + 1))
    with pytest.raises(PathError):
        root_from_path(b"\x00" * 32, 2, (b"\x00" * 32,))  # index beyond a one-level path


def test_signature_covers_chain_and_root() -> None:
    r = root(digests(3))
    sig = KEYS[0].sign(batch_digest(CHAIN, r))
    assert ed25519_verify(KEYS[0].public, sig, batch_digest(CHAIN, r))
    assert not ed25519_verify(KEYS[0].public, sig, batch_digest(b"\x02" * 32, r))
    assert not ed25519_verify(KEYS[0].public, sig, batch_digest(CHAIN, root(digests(4))))


def _validator(key: NodeKey) -> Validator:
    return Validator(key, CHAIN, Ledger({address_of(PAYER.public): 10_000}))


def test_a_validator_signs_only_durable_locks_and_each_digest_once() -> None:
    v = _validator(KEYS[0])
    orders = [make_order(PAYER, CHAIN, PAYEE, 1 + i, 0) for i in range(3)]  # one per test, same seq
    ds = [transfer_digest(o.transfer) for o in orders]
    assert v.vote_batch(ds) == []  # nothing durable yet: nothing signed
    v.mark_durable(ds[:2])
    votes = v.vote_batch()
    assert len(votes) == 1 and votes[0].digests == tuple(ds[:2])
    assert v.vote_batch() == []  # signed already: never again in another batch
    assert v.vote(ds[0]) is votes[0]  # the same vote when asked again
    assert v.vote(ds[2]) is None


def test_certificates_from_batches_verify_and_one_check_per_batch() -> None:
    ds = [Digest(d) for d in digests(9)]
    order = make_order(PAYER, CHAIN, PAYEE, 5, 0)
    target = transfer_digest(order.transfer)
    ds[4] = target
    book = VoteBook(CHAIN, COMMITTEE)
    for key in KEYS[:3]:
        sig = key.sign(batch_digest(CHAIN, root(ds)))
        assert book.add(Vote(validator=NodeId(key.public), digests=tuple(ds), signature=sig))
    assert book.checks == 3
    cert = book.assemble(order, target)
    assert isinstance(cert, Certificate)
    assert all(entry[2] == 4 and len(entry[3]) == 4 for entry in cert.signatures)  # 9 -> 16 leaves
    # A verifier that saw the votes checks no signature again; one that did not checks each once,
    # however many certificates of the same batches it gets.
    assert check_certificate(book, cert, target) is None
    assert book.checks == 3
    fresh = VoteBook(CHAIN, COMMITTEE)
    assert check_certificate(fresh, cert, target) is None
    assert check_certificate(fresh, cert, target) is None
    assert fresh.checks == 3
    # The same entries do not certify another digest of the batch, nor a digest outside it.
    assert check_certificate(VoteBook(CHAIN, COMMITTEE), cert, ds[3]) is not None
    assert check_certificate(VoteBook(CHAIN, COMMITTEE), cert, b"\x99" * 32) is not None


def test_a_vote_signed_over_other_digests_is_refused() -> None:
    ds = digests(4)
    sig = KEYS[0].sign(batch_digest(CHAIN, root(ds)))
    book = VoteBook(CHAIN, COMMITTEE)
    assert not book.add(Vote(validator=NodeId(KEYS[0].public), digests=tuple(ds[:3]), signature=sig))
    assert not book.add(Vote(validator=NodeId(KEYS[1].public), digests=tuple(ds), signature=sig))
    outsider = NodeKey.from_seed(b"\x77" * 32)
    own = outsider.sign(batch_digest(CHAIN, root(ds)))
    assert not book.add(Vote(validator=NodeId(outsider.public), digests=tuple(ds), signature=own))
    assert book.count(ds[0]) == 0
