"""Per-source budgets: token buckets with time passed in (pure state, no clock of their own).

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second. ``take(now, n)`` spends
up to ``n`` tokens and returns how many it could spend, so a caller trims the work to what the source
may still ask for (never queues it). ``Budgets`` keeps one bucket per source, created full on first
use and dropped with :meth:`Budgets.forget` (a disconnected peer), so it is bounded by the sources
that are connected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float  # most tokens held
    tokens: float = -1.0  # -1: full at first use
    stamp: float = 0.0

    def take(self, now: float, n: int) -> int:
        """Spend up to ``n`` whole tokens; returns how many were spent (0..n)."""
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        elif now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        spent = min(n, int(self.tokens))
        self.tokens -= spent
        return max(0, spent)


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

    def forget(self, key: K) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
