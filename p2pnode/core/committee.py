"""Quorum arithmetic, in one place.

With N validators of which at most f are Byzantine, Byzantine consistent broadcast needs N >= 3f + 1,
so the largest tolerated f is ``(N - 1) // 3``.

A quorum q must make any two quorums intersect in at least one honest validator: two quorums overlap
in at least 2q - N validators, and that overlap must exceed f, so 2q - N >= f + 1, i.e.
q >= (N + f + 1) / 2. We use q = ``2N // 3 + 1``, which satisfies it for every N >= 1:

- N = 3f + 1: q = 2f + 1, overlap 2q - N = f + 1.
- N = 3f + 2: q = 2f + 2, overlap f + 2.
- N = 3f + 3: q = 2f + 3, overlap f + 3.

q is also live: N - f >= q (the honest validators alone form a quorum), since N - f - q =
N - (N - 1)//3 - 2N//3 - 1 >= 0 for every N >= 1.

Consequence used throughout: at most one certificate can exist per (sender, seq), because an honest
validator in the overlap of two quorums locks (sender, seq) to a single order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pnode.wire.types import NodeId


def max_faulty(n: int) -> int:
    """f = ⌊(N−1)/3⌋."""
    if n < 1:
        raise ValueError("a committee needs at least one validator")
    return (n - 1) // 3


def quorum(n: int) -> int:
    """q = ⌊2N/3⌋ + 1."""
    if n < 1:
        raise ValueError("a committee needs at least one validator")
    return 2 * n // 3 + 1


@dataclass(frozen=True, slots=True)
class Committee:
    """The genesis validator set, sorted by node id."""

    members: tuple[NodeId, ...]
    index: dict[NodeId, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.members)) != len(self.members):
            raise ValueError("duplicate validator")
        object.__setattr__(self, "index", {m: i for i, m in enumerate(self.members)})

    @classmethod
    def of(cls, members: Iterable[bytes]) -> Committee:
        return cls(tuple(sorted(NodeId(m) for m in members)))

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def f(self) -> int:
        return max_faulty(self.size)

    @property
    def quorum(self) -> int:
        return quorum(self.size)

    def __contains__(self, node: object) -> bool:
        return node in self.index

    def is_quorum(self, signers: Iterable[bytes]) -> bool:
        """True when ``signers`` holds at least q distinct committee members."""
        return len({s for s in signers if s in self.index}) >= self.quorum
