"""The records and the mutable state of one scenario run, shared by the runner, the load and the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from p2pnode.crypto import SpendingKey
from p2pnode.errors import P2PNodeError
from p2pnode.localnet import LocalNet
from p2pnode.scenario.attacks import AttackRecord
from p2pnode.scenario.spec import Scenario

__all__ = ["NET_ERRORS", "REQUEST_TIMEOUT_S", "Account", "Payment", "Progress", "Run"]

REQUEST_TIMEOUT_S = 5.0

Progress = Callable[[str], None]
# What a request to a node that is down, paused, restarting or misbehaving may raise.
NET_ERRORS = (OSError, P2PNodeError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass
class Payment:
    tx: str
    account: int
    seq: int
    node: str
    kind: str  # "load" | "equivocation" | "final" (the payers_can_pay probe)
    submitted_s: float
    outcome: str = "pending"  # settled | blocked | refused | timeout | error
    accepted: bool = False  # the node accepted the order (SubmitReply accepted)
    error: str = ""
    seconds: float = 0.0


@dataclass
class Account:
    index: int
    key: SpendingKey
    address: bytes
    next_seq: int = 0
    busy: bool = False


@dataclass
class Run:
    """Mutable state of one run, shared by the tasks (all on one Trio thread)."""

    scenario: Scenario
    cluster: LocalNet
    chain_id: bytes
    node_ids: dict[str, bytes]
    accounts: list[Account]
    progress: Progress
    t0: float = 0.0
    t0_ns: int = 0  # wall clock at t0 (node logs carry wall-clock ts_ns)
    state: dict[str, str] = field(default_factory=dict)  # up | starting | paused | killed | late
    blocked: dict[str, set[str]] = field(default_factory=dict)
    delay_ms: dict[str, int] = field(default_factory=dict)
    payments: list[Payment] = field(default_factory=list)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)  # tx -> (sender hex, seq)
    skipped: int = 0
    rss: dict[str, list[int]] = field(default_factory=dict)  # "node-1" / "node-1#2" (2nd process) -> kB
    pids_seen: dict[str, list[int]] = field(default_factory=dict)
    windows: list[list[int]] = field(default_factory=list)  # partition [start_ns, end_ns]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    attacks: list[AttackRecord] = field(default_factory=list)  # client-port attack steps, in start order
    warnings: list[str] = field(default_factory=list)
    rr: int = 0
    # Called synchronously the instant a payment is acknowledged (a ``when = "next_ack"`` step), so
    # that no other task runs between the acknowledgement and the fault.
    on_ack: Callable[[Payment], None] | None = None

    def now(self) -> float:
        return trio.current_time() - self.t0

    def honest(self, name: str) -> bool:
        return name not in self.scenario.roles

    def targets(self) -> list[str]:
        up = [n for n in self.cluster.names if self.state[n] == "up"]
        return [n for n in up if self.honest(n)] or up

    def pick_node(self) -> str | None:
        targets = self.targets()
        if not targets:
            return None
        self.rr += 1
        return targets[self.rr % len(targets)]

    def acknowledged(self, p: Payment) -> None:
        """``p`` was just acknowledged as settled: run the armed hook, if any (once)."""
        hook, self.on_ack = self.on_ack, None
        if hook is not None:
            hook(p)

    def addr(self, name: str) -> tuple[str, int]:
        entry = self.cluster.cluster.node(name)
        return entry.host, entry.port
