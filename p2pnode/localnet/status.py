"""One look at a whole running cluster: every node's process, memory, peers, applied count and state root.

:func:`cluster_status` is what ``p2pnode net status`` prints and what a benchmark script reads after a
run. It asks every node at once (one status request each, bounded) and reads the memory of the node
processes this cluster started (:mod:`p2pnode.localnet.resources`); it never signals a process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import trio

from p2pnode.errors import P2PNodeError
from p2pnode.localnet.resources import MemorySummary, summarize_memory

if TYPE_CHECKING:
    from p2pnode.localnet.processes import LocalNet

__all__ = ["ClusterStatus", "NodeReport", "cluster_status"]


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One node. ``pid`` and the memory figures are None when its process is not running; the status
    figures are None when it did not answer (``error`` says why)."""

    name: str
    role: str
    address: str
    pid: int | None
    rss: int | None  # bytes, the node process (VmRSS)
    tree_rss: int | None  # bytes, the node and every process it started
    processes: int | None
    peer_count: int | None
    applied: int | None
    root: str | None  # hex
    ready: bool  # answering, ``ready`` not false, and ``peer_count >= min(peers.target, running - 1)``
    error: str | None
    region: str = ""  # its region in the cluster's network profile ("" without one)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    nodes: tuple[NodeReport, ...]
    memory: MemorySummary  # over the running nodes
    network: dict[str, Any] | None = None  # the cluster's network profile (ClusterDir.network)

    @property
    def running(self) -> int:
        return sum(1 for n in self.nodes if n.pid is not None)

    @property
    def answering(self) -> int:
        return sum(1 for n in self.nodes if n.root is not None)

    @property
    def roots(self) -> list[str]:
        """The distinct roots reported, most common first."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            if n.root is not None:
                counts[n.root] = counts.get(n.root, 0) + 1
        return sorted(counts, key=lambda r: (-counts[r], r))

    @property
    def roots_agree(self) -> bool:
        """Every node answered, and with the same root."""
        return self.answering == len(self.nodes) and len(self.roots) == 1

    @property
    def healthy(self) -> bool:
        return self.running == len(self.nodes) and self.roots_agree

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [asdict(n) for n in self.nodes],
            "memory": asdict(self.memory),
            "running": self.running,
            "answering": self.answering,
            "roots": self.roots,
            "roots_agree": self.roots_agree,
            "network": self.network,
        }


async def cluster_status(net: LocalNet, *, probe_s: float = 5.0) -> ClusterStatus:
    """Ask every node of ``net`` for its status (each request bounded by ``probe_s`` seconds, all at
    once) and read the memory of the running ones. Never raises for a node that is down or silent: its
    report says so."""
    running = net.running()
    memory = {m.name: m for m in net.memory(*running)} if running else {}
    infos: dict[str, dict[str, Any] | str] = {}

    async def probe(name: str) -> None:
        try:
            with trio.fail_after(probe_s):
                infos[name] = await net.status(name)
        except (OSError, P2PNodeError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            infos[name] = str(exc) or type(exc).__name__

    async with trio.open_nursery() as nursery:
        for name in running:
            nursery.start_soon(probe, name)

    reports = []
    for entry in net.cluster.nodes:
        info = infos.get(entry.name, "not running")
        m = memory.get(entry.name)
        answered = isinstance(info, dict)
        peers = info.get("peer_count") if isinstance(info, dict) else None
        applied = info.get("applied") if isinstance(info, dict) else None
        root = info.get("root") if isinstance(info, dict) else None
        if isinstance(root, bytes):
            root = root.hex()
        need = min(net.config(entry.name).peers.target, max(0, len(running) - 1))
        ready = (
            answered
            and isinstance(peers, int)
            and peers >= need
            and isinstance(info, dict)
            and info.get("ready") is not False
        )
        reports.append(
            NodeReport(
                name=entry.name,
                role=entry.role,
                address=entry.address,
                pid=running.get(entry.name),
                rss=m.rss if m is not None else None,
                tree_rss=m.tree_rss if m is not None else None,
                processes=m.processes if m is not None else None,
                peer_count=peers if isinstance(peers, int) else None,
                applied=applied if isinstance(applied, int) else None,
                root=root if isinstance(root, str) else None,
                ready=bool(ready),
                error=None if answered else str(info),
                region=entry.region,
            )
        )
    network = dict(net.cluster.network) if net.cluster.network is not None else None
    return ClusterStatus(
        nodes=tuple(reports), memory=summarize_memory(list(memory.values())), network=network
    )
