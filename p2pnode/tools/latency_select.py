"""Picking one run out of logs that hold several: ``p2pnode latency --run ID`` and ``--since``/``--until``.

``p2pnode bench`` writes a ``run_marker`` line (``run``: its run id, ``phase``: ``start`` or ``end``) into
every node's log when its load starts and when it ends (docs/logs.md). A run's window runs from its
earliest ``start`` marker to its latest ``end`` marker; a run without an ``end`` (the bench was killed)
lasts until the next run's ``start``, or to the end of the logs.

A payment belongs to a window when its **submit time** (the same anchor as every latency figure: its
earliest ``order_submitted``, else its earliest ``order_received``) lies inside it. All of that payment's
events count, also those logged after the window closed (the last node may apply it later).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from p2pnode.errors import LocalError

__all__ = ["RunWindow", "Scan", "parse_time", "scan", "select", "window_text"]

_PAYMENT_ANCHORS = ("order_submitted", "order_received")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunWindow:
    run: str
    start_ns: int
    end_ns: int | None  # None: no end marker (open until the next run or the end of the logs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    """Run markers and each payment's submit time, from one pass over the logs."""

    runs: tuple[RunWindow, ...]  # by start time
    anchors: Mapping[str, int]  # tx -> submit time (ns)

    def window(self, run: str) -> tuple[int, int | None]:
        """The ``[start, end]`` of ``run`` (``end`` None: open); raises LocalError naming the known runs."""
        for i, w in enumerate(self.runs):
            if w.run == run:
                end = w.end_ns
                if end is None and i + 1 < len(self.runs):
                    end = self.runs[i + 1].start_ns - 1
                return w.start_ns, end
        known = ", ".join(w.run for w in self.runs) or "none"
        raise LocalError(f"no run {run!r} in these logs (runs found: {known})")


def scan(lines_by_file: Mapping[str, Iterable[str]]) -> Scan:
    """Read the logs once for run markers and payment submit times (malformed lines are skipped)."""
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    submitted: dict[str, int] = {}
    received: dict[str, int] = {}
    for source in lines_by_file.values():
        for raw in source:
            if '"run_marker"' not in raw and not any(a in raw for a in _PAYMENT_ANCHORS):
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(obj, dict) or type(obj.get("ts_ns")) is not int:
                continue
            event, ts = obj.get("event"), obj["ts_ns"]
            if event == "run_marker" and isinstance(obj.get("run"), str):
                run = obj["run"]
                if obj.get("phase") == "end":
                    ends[run] = max(ends.get(run, ts), ts)
                else:
                    starts[run] = min(starts.get(run, ts), ts)
            elif event in _PAYMENT_ANCHORS and isinstance(obj.get("tx"), str):
                into = submitted if event == "order_submitted" else received
                tx = obj["tx"].lower()
                into[tx] = min(into.get(tx, ts), ts)
    anchors = dict(received)
    anchors.update(submitted)
    runs = sorted(
        (RunWindow(run=r, start_ns=t, end_ns=ends.get(r)) for r, t in starts.items()),
        key=lambda w: (w.start_ns, w.run),
    )
    return Scan(runs=tuple(runs), anchors=anchors)


def select(found: Scan, since_ns: int | None, until_ns: int | None) -> set[str]:
    """The payments whose submit time lies in ``[since_ns, until_ns]`` (a missing bound is open)."""
    return {
        tx
        for tx, ts in found.anchors.items()
        if (since_ns is None or ts >= since_ns) and (until_ns is None or ts <= until_ns)
    }


def parse_time(text: str) -> int:
    """``--since``/``--until``: nanoseconds since the epoch (an integer, as ``ts_ns``), or an ISO 8601
    date and time (``2026-12-02T07:20:00``, UTC unless it names its offset, e.g. ``+01:00`` or ``Z``)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise LocalError(
            f"{text!r} is neither nanoseconds since the epoch nor an ISO 8601 time like 2026-12-02T07:20:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def window_text(run: str | None, since_ns: int | None, until_ns: int | None, payments: int) -> str:
    """How the payments were picked, for the report: ``run ID (from .. to ..): N payments``."""
    lo = "start" if since_ns is None else _iso(since_ns)
    hi = "end" if until_ns is None else _iso(until_ns)
    head = f"run {run}" if run is not None else "time window"
    return f"{head}, payments submitted from {lo} to {hi}: {payments}"
