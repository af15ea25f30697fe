"""Votes in, certificates out; and the checks every node runs on a certificate it receives.

Certificate check, in order:

1. ``[REJECT]`` at least q signatures, validators distinct and sorted, every one in the committee
2. ``[REJECT]`` every signature verifies over ``vote_digest(chain, transfer digest)`` (votes this node
   already verified are not verified again)
3. ``[REJECT]`` the order's own checks and proof, as the node's config says (done by the caller)
"""

from __future__ import annotations

from collections import OrderedDict

from p2pnode.core.committee import Committee
from p2pnode.core.payments import vote_digest
from p2pnode.crypto import ed25519_verify
from p2pnode.wire.messages import Certificate, Order, ShieldedCertificate, ShieldedOrder, Vote
from p2pnode.wire.types import Digest, NodeId


class VoteBook:
    """Verified votes per transfer digest. Bounded: the oldest digests are dropped past ``limit``.

    Invariant: only votes whose signature verified and whose validator is a committee member are kept.
    """

    def __init__(self, chain_id: bytes, committee: Committee, limit: int = 50_000) -> None:
        self.chain_id = chain_id
        self.committee = committee
        self.limit = limit
        self._votes: OrderedDict[Digest, dict[NodeId, bytes]] = OrderedDict()
        self._verified: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        self.checks = 0  # signatures verified (cache misses), for the node's status

    def signature_ok(self, digest: bytes, validator: bytes, signature: bytes) -> bool:
        key = (digest, validator, signature)
        if key in self._verified:
            return True
        if validator not in self.committee:
            return False
        self.checks += 1
        if not ed25519_verify(validator, signature, vote_digest(self.chain_id, digest)):
            return False
        self._verified[key] = None
        if len(self._verified) > 4 * self.limit:
            self._verified.popitem(last=False)
        return True

    def has(self, vote: Vote) -> bool:
        return vote.validator in self._votes.get(vote.digest, {})

    def add(self, vote: Vote) -> bool:
        """Verify and store ``vote``. Returns False if the vote is invalid (caller rejects it).

        A second vote from one validator for one digest is a no-op (True, nothing changes).
        """
        if self.has(vote):
            return True
        if not self.signature_ok(vote.digest, vote.validator, vote.signature):
            return False
        book = self._votes.get(vote.digest)
        if book is None:
            book = self._votes[vote.digest] = {}
            while len(self._votes) > self.limit:
                self._votes.popitem(last=False)
        book[vote.validator] = vote.signature
        return True

    def signatures(self, digest: bytes) -> list[tuple[bytes, bytes]]:
        """The verified (validator, signature) pairs held for ``digest``."""
        return list(self._votes.get(Digest(digest), {}).items())

    def count(self, digest: bytes) -> int:
        return len(self._votes.get(Digest(digest), {}))

    def assemble(
        self, order: Order | ShieldedOrder, digest: Digest
    ) -> Certificate | ShieldedCertificate | None:
        """A certificate from the first q votes by validator id, or None without a quorum."""
        book = self._votes.get(digest, {})
        if len(book) < self.committee.quorum:
            return None
        chosen = tuple(sorted(book.items())[: self.committee.quorum])
        if isinstance(order, ShieldedOrder):
            return ShieldedCertificate(order=order, signatures=chosen)
        return Certificate(order=order, signatures=chosen)

    def forget(self, digest: bytes) -> None:
        self._votes.pop(Digest(digest), None)


def check_certificate(book: VoteBook, cert: Certificate | ShieldedCertificate, digest: bytes) -> str | None:
    """Checks 1–2. Returns None if valid, else the reason."""
    sigs = cert.signatures
    committee = book.committee
    if len(sigs) < committee.quorum:
        return f"certificate has {len(sigs)} signatures, quorum is {committee.quorum}"
    validators = [v for v, _ in sigs]
    if validators != sorted(set(validators)):
        return "certificate signers are not distinct and sorted"
    for v, _ in sigs:
        if v not in committee:
            return f"certificate signer {v.hex()[:16]} is not in the committee"
    for v, s in sigs:
        if not book.signature_ok(digest, v, s):
            return f"certificate signature of {v.hex()[:16]} does not verify"
    return None
