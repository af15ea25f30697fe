"""Nearest-rank percentiles and the count/p50/p90/p99/max summary shared by ``latency`` and ``bench``.

For ``n`` sorted samples the p-th percentile is the sample of rank ``ceil(p/100 * n)`` (rank 1 for
p = 0). It always returns an observed value and needs no interpolation; :func:`percentile` is the one
implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any, TypeVar

__all__ = ["CI_PERCENTILES", "Stats", "percentile", "percentile_ci", "round3"]


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples: the sample of rank ``ceil(p/100 * n)``.

    ``p`` is in [0, 100]; p = 0 gives the smallest sample. The rank is computed in exact rational
    arithmetic (``99.9`` of 1000 samples is rank 999, not 1000). Raises ``ValueError`` on no samples.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside [0, 100]")
    rank = max(1, math.ceil(Fraction(str(p)) * n / 100))
    return sorted_values[rank - 1]


CI_PERCENTILES = (50, 90, 99)
_Z95 = 1.959964


def percentile_ci(sorted_values: Sequence[float]) -> dict[str, list[float] | None]:
    """A distribution-free 95 % confidence interval of the p50, p90 and p99 of sorted samples.

    The p-th percentile's interval runs from the sample of rank ``ceil(n q - z sqrt(n q (1-q)))`` to the
    one of rank ``ceil(n q + z sqrt(n q (1-q))) + 1`` (q = p/100, z = 1.96, ranks clamped to [1, n]):
    the order statistics between which the true percentile lies with about 95 % probability if the
    samples were independent draws. Keys ``p50``, ``p90``, ``p99``; ``None`` with no samples. Samples of
    one run are not independent (payments queue behind each other), so read the interval as the run's
    own spread, not as a guarantee.
    """
    n = len(sorted_values)
    out: dict[str, list[float] | None] = {}
    for p in CI_PERCENTILES:
        if n == 0:
            out[f"p{p}"] = None
            continue
        q = p / 100
        half = _Z95 * math.sqrt(n * q * (1 - q))
        lo = min(n, max(1, math.ceil(n * q - half)))
        hi = min(n, max(1, math.ceil(n * q + half) + 1))
        out[f"p{p}"] = [round3(sorted_values[lo - 1]), round3(sorted_values[hi - 1])]
    return out


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Count and nearest-rank p50/p90/p99/max of one set of samples, in ``unit`` ("ms" or "us")."""

    unit: str
    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, samples: Iterable[float], unit: str = "ms") -> Stats:
        values = sorted(samples)
        if not values:
            return cls(unit=unit, count=0, p50=None, p90=None, p99=None, max=None)
        return cls(
            unit=unit,
            count=len(values),
            p50=round3(percentile(values, 50)),
            p90=round3(percentile(values, 90)),
            p99=round3(percentile(values, 99)),
            max=round3(values[-1]),
        )

    def to_json(self) -> dict[str, Any]:
        return record_to_json(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Stats:
        return record_from_json(cls, obj)


R = TypeVar("R")


def record_to_json(record: Any) -> dict[str, Any]:
    """A report record's fields as JSON values, in field order: nested records through their own
    ``to_json``, tuples as lists, maps with sorted keys."""
    return {f.name: _json_value(getattr(record, f.name)) for f in fields(record)}


def _json_value(v: Any) -> Any:
    if hasattr(v, "to_json"):
        return v.to_json()
    if isinstance(v, tuple):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in sorted(v.items())}
    return v


def record_from_json(cls: type[R], obj: Mapping[str, Any], **convert: Callable[[Any], Any]) -> R:
    """The inverse of :func:`record_to_json`; ``convert`` maps a field name to its decoder."""
    return cls(**{f.name: convert.get(f.name, _same)(obj[f.name]) for f in fields(cls)})  # type: ignore[arg-type]


def _same(v: Any) -> Any:
    return v


def round3(v: float) -> float:
    """``v`` rounded to 3 decimals, the precision every report prints and stores."""
    return round(float(v), 3)
