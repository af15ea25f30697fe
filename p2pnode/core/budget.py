"""Per-source budgets: token buckets with time passed in (pure state, no clock of their own).

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second. ``take(now, n)`` spends
up to ``n`` tokens and returns how many it could spend, so a caller trims the work to what the source
may still ask for (never queues it). ``Budgets`` keeps one bucket per source, created full on first
use and dropped with :meth:`Budgets.forget` (a disconnected peer), so it is bounded by the sources
that are connected; sources that never disconnect (client connections) are dropped by
:meth:`Budgets.prune` once their bucket is full again (a new bucket starts full: nothing is lost).

``charge`` takes tokens whatever is left, down to ``-burst``: a source that made this node waste
work (an invalid proof) pays for it with a longer wait before its next request is served.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float  # most tokens held
    tokens: float = 0.0
    stamp: float = 0.0
    fresh: bool = True  # full at first use

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

    def charge(self, now: float, n: float) -> None:
        """Take ``n`` tokens even if that leaves the bucket in debt (at most ``burst`` deep)."""
        self._refill(now)
        self.tokens = max(-self.burst, self.tokens - n)

    def full(self, now: float) -> bool:
        """True if the bucket would be full at ``now`` (it can be forgotten without effect)."""
        return self.fresh or self.tokens + max(0.0, now - self.stamp) * self.rate >= self.burst


@dataclass(slots=True)
class Budgets(Generic[K]):
    rate: float
    burst: float
    _buckets: dict[K, TokenBucket] = field(default_factory=dict)

    def take(self, key: K, now: float, n: int) -> int:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take(now, n)

    def charge(self, key: K, now: float, n: float) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        bucket.charge(now, n)

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


Source = Hashable  # a peer's NodeId (bytes), or the driver's own key for one client connection


@dataclass(slots=True)
class ProofBudget:
    """What each source may make this node verify, and what it has done wrong lately.

    - ``take``: one token per proof queued for verification (``rate`` per second, ``burst`` held).
    - ``on_bad``: an invalid proof costs its source ``bad_cost`` more tokens (so a source sending only
      bad proofs gets about ``rate / (1 + bad_cost)`` verifications per second once its reserve is
      spent) and makes it *suspect* for one window (``burst / rate`` seconds): its proofs are then
      verified in batches of their own, never mixed with another source's.
    - ``strike``/``cut``: client connections have no NodeId for the peer penalty table, so their
      invalid proofs are counted here; a cut connection is refused and closed.

    Bounded: buckets of sources that are neither in debt nor suspect are dropped by ``prune`` (they
    would start full again anyway); marks older than a window, and cuts older than ``cut_s``, too.
    """

    rate: float
    burst: float
    bad_cost: float = 8.0
    cut_s: float = 60.0
    tokens: Budgets[Source] = field(init=False)
    bad_at: dict[Source, float] = field(default_factory=dict)
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
        self.strikes.pop(source, None)
        self.cut.pop(source, None)

    def prune(self, now: float) -> None:
        for s in [s for s, at in self.bad_at.items() if now - at >= self.window]:
            del self.bad_at[s]
            self.strikes.pop(s, None)
        for s in [s for s, at in self.cut.items() if now - at >= self.cut_s]:
            del self.cut[s]
        self.tokens.prune(now, keep=lambda s: s in self.bad_at)

    def __len__(self) -> int:
        return len(self.tokens) + len(self.bad_at) + len(self.cut)
