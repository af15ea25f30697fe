"""Batch-signed votes: one Ed25519 signature over the Merkle root of a batch of transfer digests.

A validator signs the orders it durably locked in one commit of its store (one group commit: one
order at light load, dozens under load) with a single signature over
``batch_digest(chain_id, root)``. A vote for one digest is then (signature, index, path): the
Merkle path from the digest's leaf to the signed root. A verifier recomputes the root from the
digest and the path (hashes only) and checks the signature once per (validator, root): a full node
checks each validator batch once, however many certificates carry it.

The tree (domain-separated as in RFC 6962 and RFC 9162, so that no leaf is ever an inner node):

- leaf = ``hash256(LEAF_TAG, digest)``; inner node = ``hash256(NODE_TAG, left, right)``;
- a batch of n digests is padded with ``EMPTY`` leaves (``hash256(EMPTY_TAG)``, no digest hashes to
  it) up to the next power of two; a batch of one is its leaf (path empty);
- a path lists the siblings from the leaf up; bit i of ``index`` (0 = left) says on which side the
  running hash is at level i; ``index`` must have no bits beyond the path's length.

Security argument in ``docs/gossip.md`` ("Batch-signed votes"): a signature over a root commits to
exactly the leaves of one tree, so a path proves that the validator signed that very digest; the
signed message carries its own domain tag and the chain id, so it is never a handshake signature,
a single-vote signature of another protocol version or a vote of another chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from p2pnode.crypto import hash256

BATCH_TAG = b"p2pnode/vote-batch/v2"
LEAF_TAG = b"p2pnode/vote-leaf/v2"
NODE_TAG = b"p2pnode/vote-node/v2"
EMPTY_TAG = b"p2pnode/vote-empty/v2"
EMPTY = hash256(EMPTY_TAG)
MAX_BATCH = 1024  # digests in one signed batch (the wire limit of a Vote)
MAX_DEPTH = 10  # log2(MAX_BATCH): the longest path


class PathError(ValueError):
    """A Merkle path that cannot name a leaf (too long, or index bits beyond its length)."""


def batch_digest(chain_id: bytes, root: bytes) -> bytes:
    """What a validator signs: the chain and the batch's Merkle root, under the batch domain tag."""
    return hash256(BATCH_TAG, chain_id, root)


def leaf(digest: bytes) -> bytes:
    return hash256(LEAF_TAG, digest)


def _node(left: bytes, right: bytes) -> bytes:
    return hash256(NODE_TAG, left, right)


def levels(digests: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree over ``digests``, leaves first, the root alone last."""
    if not digests:
        raise ValueError("a batch holds at least one digest")
    level = [leaf(d) for d in digests]
    width = 1
    while width < len(level):
        width *= 2
    level += [EMPTY] * (width - len(level))
    out = [level]
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        out.append(level)
    return out


def root(digests: Sequence[bytes]) -> bytes:
    return levels(digests)[-1][0]


def path(tree: list[list[bytes]], index: int) -> tuple[bytes, ...]:
    """The siblings of leaf ``index`` from the bottom up, in a tree made by :func:`levels`."""
    out = []
    for level in tree[:-1]:
        out.append(level[index ^ 1])
        index //= 2
    return tuple(out)


def root_from_path(digest: bytes, index: int, siblings: Sequence[bytes]) -> bytes:
    """The root that ``digest`` at ``index`` with these siblings leads to; raises :class:`PathError`."""
    if len(siblings) > MAX_DEPTH:
        raise PathError(f"path of {len(siblings)} levels, at most {MAX_DEPTH}")
    if index >> len(siblings):
        raise PathError(f"index {index} out of range for a path of {len(siblings)} levels")
    h = leaf(digest)
    for sibling in siblings:
        h = _node(sibling, h) if index & 1 else _node(h, sibling)
        index >>= 1
    return h


__all__ = [
    "BATCH_TAG",
    "EMPTY",
    "MAX_BATCH",
    "MAX_DEPTH",
    "PathError",
    "batch_digest",
    "leaf",
    "levels",
    "path",
    "root",
    "root_from_path",
]
