"""Votes in, certificates out; and the checks every node runs on a certificate it receives.

Certificate check, in order:

1. ``[REJECT]`` at least q signatures, validators distinct and sorted, every one in the committee
2. ``[REJECT]`` every signer's path leads from the transfer digest to a batch root whose signature
   verifies over ``batch_digest(chain, root)`` (batch signatures this node verified before, as a Vote
   or in another certificate, are not verified again)
3. ``[REJECT]`` the order's own checks and proof, as the node's config says (done by the caller)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from p2pnode.core.batches import PathError, batch_digest, levels, path, root_from_path
from p2pnode.core.committee import Committee
from p2pnode.crypto import ed25519_verify
from p2pnode.wire.messages import Certificate, Order, ShieldedCertificate, ShieldedOrder, Signer, Vote
from p2pnode.wire.types import Digest, NodeId


@dataclass(slots=True)
class _Batch:
    """A verified batch vote: its signature and its tree (paths are read off it)."""

    signature: bytes
    tree: list[list[bytes]]
    index: dict[bytes, int]  # digest -> leaf index
    message: Vote  # as received, for re-sending (the same bytes, the same gossip id)


class VoteBook:
    """Verified votes per transfer digest. Bounded: the oldest digests and batches are dropped.

    A vote arrives as a batch (:class:`Vote`: one signature over many digests); its signature is
    checked once and each digest then counts the validator's vote. Certificate entries are checked
    against a cache of verified (validator, root, signature): a batch signature is verified once
    whether it arrives as a Vote or in any number of certificates. A validator's own batches are
    verified too (once each): a signer that produced a bad signature is caught here, not by peers.

    Invariant: only votes whose signature verified and whose validator is a committee member are kept.
    """

    def __init__(
        self,
        chain_id: bytes,
        committee: Committee,
        limit: int = 50_000,
        *,
        verify: Callable[[bytes, bytes, bytes], bool] = ed25519_verify,
    ) -> None:
        self.chain_id = chain_id
        self._verify = verify  # (public key, signature, message) -> ok; the simulator shares results
        self.committee = committee
        self.limit = limit
        self._votes: OrderedDict[Digest, dict[NodeId, bytes]] = OrderedDict()  # -> validator -> root
        self._batches: OrderedDict[tuple[bytes, bytes], _Batch] = OrderedDict()  # (validator, root)
        self._verified: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        self.checks = 0  # Ed25519 verifications done (the cache's misses)

    def signature_ok(self, validator: bytes, root: bytes, signature: bytes) -> bool:
        """Did ``validator`` sign the batch ``root``? Verified once per (validator, root, signature)."""
        key = (validator, root, signature)
        if key in self._verified:
            return True
        if validator not in self.committee:
            return False
        self.checks += 1
        if not self._verify(validator, signature, batch_digest(self.chain_id, root)):
            return False
        self._verified[key] = None
        if len(self._verified) > 4 * self.limit:
            self._verified.popitem(last=False)
        return True

    def add(self, vote: Vote) -> bool:
        """Verify and store a batch vote. Returns False if it is invalid (the caller rejects it).

        Digests already counted for this validator keep their first batch; nothing else changes.
        """
        if not vote.digests:
            return False
        tree = levels(vote.digests)
        root = tree[-1][0]
        key = (bytes(vote.validator), root)
        if key not in self._batches:
            if not self.signature_ok(vote.validator, root, vote.signature):
                return False
            index: dict[bytes, int] = {}
            for i, d in enumerate(vote.digests):
                index.setdefault(d, i)
            self._batches[key] = _Batch(vote.signature, tree, index, vote)
            while len(self._batches) > self.limit:
                self._batches.popitem(last=False)
        for d in vote.digests:
            book = self._votes.get(Digest(d))
            if book is None:
                book = self._votes[Digest(d)] = {}
                while len(self._votes) > self.limit:
                    self._votes.popitem(last=False)
            book.setdefault(vote.validator, root)
        return True

    def validators(self, digest: bytes) -> list[NodeId]:
        """The validators whose verified vote for ``digest`` is held."""
        return list(self._votes.get(Digest(digest), {}))

    def messages(self, digest: bytes) -> list[Vote]:
        """The batch votes held for ``digest``, as received (to send them again)."""
        out = []
        for validator, root in self._votes.get(Digest(digest), {}).items():
            batch = self._batches.get((bytes(validator), root))
            if batch is not None:
                out.append(batch.message)
        return out

    def count(self, digest: bytes) -> int:
        return len(self._votes.get(Digest(digest), {}))

    def _entry(self, digest: Digest, validator: NodeId, root: bytes) -> Signer | None:
        batch = self._batches.get((bytes(validator), root))
        if batch is None:
            return None
        i = batch.index[digest]
        return (bytes(validator), batch.signature, i, path(batch.tree, i))

    def assemble(
        self, order: Order | ShieldedOrder, digest: Digest
    ) -> Certificate | ShieldedCertificate | None:
        """A certificate from the first q votes by validator id, or None without a quorum."""
        book = self._votes.get(digest, {})
        entries = [e for v, r in sorted(book.items()) if (e := self._entry(digest, v, r)) is not None]
        if len(entries) < self.committee.quorum:
            return None
        chosen = tuple(entries[: self.committee.quorum])
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
    validators = [entry[0] for entry in sigs]
    if validators != sorted(set(validators)):
        return "certificate signers are not distinct and sorted"
    for v in validators:
        if v not in committee:
            return f"certificate signer {v.hex()[:16]} is not in the committee"
    for v, s, index, siblings in sigs:
        try:
            root = root_from_path(digest, index, siblings)
        except PathError as exc:
            return f"certificate signature of {v.hex()[:16]}: {exc}"
        if not book.signature_ok(v, root, s):
            return f"certificate signature of {v.hex()[:16]} does not verify"
    return None
