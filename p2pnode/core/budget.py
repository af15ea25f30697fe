"""Per-source budgets: token buckets with time passed in (pure state, no clock of their own).

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second. ``take(now, n)`` spends
up to ``n`` tokens and returns how many it could spend, so a caller trims the work to what the source
may still ask for (never queues it). ``Budgets`` keeps one bucket per source, created full on first
use and dropped with :meth:`Budgets.forget` (a disconnected peer), so it is bounded by the sources
that are connected; sources that never disconnect (client connections) are dropped by
:meth:`Budgets.prune` once their bucket is full again (a new bucket starts full: nothing is lost).

``charge`` takes tokens whatever is left, down to ``-max_debt`` (``burst`` unless set): a source that
made this node waste work (an invalid proof) pays for it with a longer wait before its next request is
served.

Verification order (:func:`choose_batch`, :class:`VerifyQueue`): queued proofs wait in one lane per
source. A source is *trusted* once a proof it asked for verified valid, *new* until then, *suspect*
for a while after an invalid one. Certificates go first, then each trusted lane in turn (up to
``batch_max`` each), then one small batch of untrusted work (``new_batch`` from a new source, one
proof from a suspect one), then the trusted lanes again: an honest proof waits for at most one small
untrusted batch, never for the bisection of a large one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float  # most tokens held
    tokens: float = 0.0
    stamp: float = 0.0
    fresh: bool = True  # full at first use
    max_debt: float | None = None  # deepest debt ``charge`` may leave; None: ``burst``

    def _refill(self, now: float) -> None:
        if self.fresh:
            self.tokens, self.stamp, self.fresh = self.burst, now, False
        elif now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, n: int) -> int:
        """Spend up to ``n`` whole tokens; returns how many were spent (0..n)."""
        self._refill(now)
        spent = max(0, min(n, int(self.tokens)))
        self.tokens -= spent
        return spent

    def charge(self, now: float, n: float) -> float:
        """Take ``n`` tokens even if that leaves the bucket in debt (at most ``max_debt`` deep);
        returns the tokens left (negative: in debt)."""
        self._refill(now)
        floor = self.burst if self.max_debt is None else self.max_debt
        self.tokens = max(-floor, self.tokens - n)
        return self.tokens

    def available(self, now: float) -> float:
        """Tokens held at ``now`` (negative: in debt)."""
        self._refill(now)
        return self.tokens

    def give(self, now: float, n: float) -> None:
        """Add ``n`` tokens, up to ``burst`` (a credit earned, e.g. by bytes received)."""
        self._refill(now)
        self.tokens = min(self.burst, self.tokens + n)

    def full(self, now: float) -> bool:
        """True if the bucket would be full at ``now`` (it can be forgotten without effect)."""
        return self.fresh or self.tokens + max(0.0, now - self.stamp) * self.rate >= self.burst


@dataclass(slots=True)
class Budgets(Generic[K]):
    """One bucket per source. ``empty``: new buckets start with no tokens instead of full (a credit
    that only ``give`` fills, e.g. ``rate=0``: bytes this node may send back for bytes received)."""

    rate: float
    burst: float
    empty: bool = False
    _buckets: dict[K, TokenBucket] = field(default_factory=dict)

    def _bucket(self, key: K, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if self.empty:
                bucket = TokenBucket(self.rate, self.burst, tokens=0.0, stamp=now, fresh=False)
            else:
                bucket = TokenBucket(self.rate, self.burst)
            self._buckets[key] = bucket
        return bucket

    def take(self, key: K, now: float, n: int) -> int:
        return self._bucket(key, now).take(now, n)

    def charge(self, key: K, now: float, n: float) -> float:
        """Take ``n`` tokens from ``key`` even into debt; returns the tokens left."""
        return self._bucket(key, now).charge(now, n)

    def give(self, key: K, now: float, n: float) -> None:
        self._bucket(key, now).give(now, n)

    def available(self, key: K, now: float) -> int:
        """Whole tokens ``key`` could take at ``now`` (without taking them)."""
        bucket = self._bucket(key, now)
        bucket._refill(now)
        return max(0, int(bucket.tokens))

    def forget(self, key: K) -> None:
        self._buckets.pop(key, None)

    def prune(self, now: float, keep: Callable[[K], bool] = lambda _: False) -> int:
        """Drop the buckets that are full again (unless ``keep(key)``); returns how many were dropped."""
        gone = [k for k, b in self._buckets.items() if not keep(k) and b.full(now)]
        for k in gone:
            del self._buckets[k]
        return len(gone)

    def __len__(self) -> int:
        return len(self._buckets)


class Trust(IntEnum):
    """A verification lane's standing, most urgent first."""

    CERT = 0  # certificates: a quorum of signatures verified before their proof is queued
    TRUSTED = 1  # a proof this source asked for verified valid, and none invalid lately
    NEW = 2  # no proof of this source verified valid yet
    SUSPECT = 3  # an invalid proof of this source lately (``ProofBudget.suspect``)


CERTIFICATES: Final[Hashable] = "certificates"  # the lane key of certificates' proofs (not a source)
SUSPECT_BATCH: Final = 1  # a suspect source's proofs are verified one at a time: nothing to bisect


@dataclass(frozen=True, slots=True)
class Lane:
    """What :func:`choose_batch` knows of one lane with queued work."""

    trust: Trust
    served: bool  # had a batch since the last untrusted batch


def choose_batch(lanes: Sequence[Lane], *, batch_max: int, new_batch: int) -> tuple[int, int] | None:
    """Which lane is verified next, and the most proofs it may put in that batch: ``(index, size)``,
    or None if there are no lanes. ``lanes`` are in round-robin order (longest since its last batch
    first).

    Certificates first; then the trusted lanes not yet served since the last untrusted batch; then one
    untrusted batch, new sources before suspect ones (``new_batch`` proofs from a new source,
    ``SUSPECT_BATCH`` from a suspect one); with no untrusted work, the trusted lanes again. A failed
    batch is bisected, so its size bounds how long the proofs queued behind it wait."""
    if not lanes:
        return None
    # Rank: certificates, unserved trusted, new, suspect, then trusted lanes already served (a new
    # round: nothing untrusted waits); ties go to the lane first in round-robin order.
    rank = [
        (4 if lane.trust == Trust.TRUSTED and lane.served else int(lane.trust), i)
        for i, lane in enumerate(lanes)
    ]
    _, i = min(rank)
    trust = lanes[i].trust
    size = {Trust.NEW: new_batch, Trust.SUSPECT: SUSPECT_BATCH}.get(trust, batch_max)
    return i, min(size, batch_max)


class VerifyQueue(Generic[T]):
    """Proofs waiting for verification, one FIFO lane per source (or ``CERTIFICATES``), served in the
    order :func:`choose_batch` gives. Pure state: the caller says, when it takes a batch, each lane's
    trust, which items are still wanted and which lane an item belongs in now (a proof two sources
    asked for moves to the other source's lane when the first is dropped).

    Bounded by the caller: ``len`` counts every queued item; ``compact`` drops unwanted ones."""

    def __init__(self, *, batch_max: int, new_batch: int) -> None:
        self.batch_max = batch_max
        self.new_batch = new_batch
        self._lanes: OrderedDict[Hashable, deque[T]] = OrderedDict()
        self._served: set[Hashable] = set()
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def push(self, lane: Hashable, item: T) -> None:
        self._lanes.setdefault(lane, deque()).append(item)
        self._len += 1

    def compact(self, wanted: Callable[[T], bool]) -> int:
        """Drop the items no longer wanted; returns how many were dropped."""
        before = self._len
        for key in list(self._lanes):
            kept = deque(i for i in self._lanes[key] if wanted(i))
            if kept:
                self._lanes[key] = kept
            else:
                self._drop_lane(key)
        self._len = sum(len(q) for q in self._lanes.values())
        return before - self._len

    def _drop_lane(self, key: Hashable) -> None:
        del self._lanes[key]
        self._served.discard(key)

    def take(
        self,
        trust: Callable[[Hashable], Trust],
        wanted: Callable[[T], bool],
        lane_of: Callable[[T], Hashable],
    ) -> tuple[Trust, list[T], int]:
        """The next batch: ``(its lane's trust, items, how many unwanted items were skipped)``; the
        items are empty only if the queue is. Items that belong in another lane now are moved there."""
        skipped = 0
        while self._lanes:
            keys = list(self._lanes)
            trusts = [trust(k) for k in keys]
            lanes = [Lane(t, k in self._served) for k, t in zip(keys, trusts, strict=True)]
            chosen = choose_batch(lanes, batch_max=self.batch_max, new_batch=self.new_batch)
            assert chosen is not None
            i, size = chosen
            key, lane_trust, q = keys[i], trusts[i], self._lanes[keys[i]]
            batch: list[T] = []
            while q and len(batch) < size:
                item = q.popleft()
                self._len -= 1
                if not wanted(item):
                    skipped += 1
                    continue
                home = lane_of(item)
                if home != key:
                    self.push(home, item)
                    continue
                batch.append(item)
            if not q:
                self._drop_lane(key)
            else:
                self._lanes.move_to_end(key)
            if not batch:
                continue
            if lane_trust in (Trust.NEW, Trust.SUSPECT):
                self._served.clear()
            elif lane_trust == Trust.TRUSTED:
                if lanes[i].served:  # every trusted lane had its turn and nothing untrusted waits
                    self._served.clear()
                self._served.add(key)
            return lane_trust, batch, skipped
        return Trust.CERT, [], skipped


Source = Hashable  # a peer's NodeId (bytes), or the driver's own key for one client connection


@dataclass(slots=True)
class ProofBudget:
    """What each source may make this node verify, and what it has done wrong lately.

    - ``take``: one token per proof queued for verification (``rate`` per second, ``burst`` held).
    - ``on_bad``: an invalid proof costs its source ``bad_cost`` more tokens (so a source sending only
      bad proofs gets about ``rate / (1 + bad_cost)`` verifications per second once its reserve is
      spent) and makes it *suspect* for one window (``burst / rate`` seconds): its proofs are then
      verified in batches of their own, never mixed with another source's.
    - ``on_good``: a valid proof makes its source *trusted* (``trust``) for ``trusted_s`` after its last
      valid proof, unless it is suspect; a source never seen valid is *new*. See :func:`choose_batch`.
    - ``strike``/``cut``: client connections have no NodeId for the peer penalty table, so their
      invalid proofs are counted here; a cut connection is refused and closed.

    Bounded: buckets of sources that are neither in debt nor suspect are dropped by ``prune`` (they
    would start full again anyway); marks older than a window, trust older than ``trusted_s`` and
    cuts older than ``cut_s``, too.
    """

    rate: float
    burst: float
    bad_cost: float = 8.0
    cut_s: float = 60.0
    trusted_s: float = 60.0
    tokens: Budgets[Source] = field(init=False)
    bad_at: dict[Source, float] = field(default_factory=dict)
    good_at: dict[Source, float] = field(default_factory=dict)
    strikes: dict[Source, int] = field(default_factory=dict)
    cut: dict[Source, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokens = Budgets(rate=self.rate, burst=self.burst)

    @property
    def window(self) -> float:
        return self.burst / self.rate

    def take(self, source: Source, now: float) -> bool:
        return self.tokens.take(source, now, 1) == 1

    def on_bad(self, source: Source, now: float) -> None:
        self.tokens.charge(source, now, self.bad_cost)
        self.bad_at[source] = now

    def suspect(self, source: Source, now: float) -> bool:
        at = self.bad_at.get(source)
        return at is not None and now - at < self.window

    def on_good(self, source: Source, now: float) -> None:
        self.good_at[source] = now

    def trust(self, source: Source, now: float) -> Trust:
        """How far this source's proofs are trusted to be valid (suspect wins over trusted)."""
        if self.suspect(source, now):
            return Trust.SUSPECT
        at = self.good_at.get(source)
        return Trust.TRUSTED if at is not None and now - at < self.trusted_s else Trust.NEW

    def strike(self, source: Source) -> int:
        n = self.strikes.get(source, 0) + 1
        self.strikes[source] = n
        return n

    def cut_off(self, source: Source, now: float) -> None:
        self.cut[source] = now
        self.strikes.pop(source, None)

    def is_cut(self, source: Source) -> bool:
        return source in self.cut

    def forget(self, source: Source) -> None:
        self.tokens.forget(source)
        self.bad_at.pop(source, None)
        self.good_at.pop(source, None)
        self.strikes.pop(source, None)
        self.cut.pop(source, None)

    def prune(self, now: float) -> None:
        for s in [s for s, at in self.bad_at.items() if now - at >= self.window]:
            del self.bad_at[s]
            self.strikes.pop(s, None)
        for s in [s for s, at in self.cut.items() if now - at >= self.cut_s]:
            del self.cut[s]
        for s in [s for s, at in self.good_at.items() if now - at >= self.trusted_s]:
            del self.good_at[s]
        self.tokens.prune(now, keep=lambda s: s in self.bad_at)

    def __len__(self) -> int:
        return len(self.tokens) + len(self.bad_at) + len(self.good_at) + len(self.cut)
