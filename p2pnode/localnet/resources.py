"""What the node processes of a cluster cost: resident memory per node, read from the kernel.

On Linux the figures are ``VmRSS`` of ``/proc/<pid>/status`` (the resident set, in kibibytes there,
in bytes here); elsewhere psutil's ``memory_info().rss``, the same quantity. A node is its own process
plus whatever it started (the proof-verification worker and multiprocessing's resource tracker): both
are reported, so that a figure per node and a figure per process tree can be told apart.

Only processes that :class:`~p2pnode.localnet.LocalNet` identifies as this cluster's nodes are read
(:meth:`~p2pnode.localnet.LocalNet.memory`); nothing here signals a process.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["MemorySummary", "NodeMemory", "read_vm_rss", "summarize_memory"]

_PROC = Path("/proc")


def read_vm_rss(pid: int, *, proc: Path = _PROC) -> int | None:
    """Resident set size of ``pid`` in bytes: ``VmRSS`` of ``/proc/<pid>/status`` where there is one,
    else psutil's ``rss``. None if the process is gone, is a zombie (no ``VmRSS`` line) or cannot be read."""
    status = proc / str(pid) / "status"
    try:
        text = status.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        if proc.is_dir():
            return None  # a /proc without this pid: the process is gone
        text = None  # no /proc at all (macOS)
    except OSError:
        return None
    if text is not None:
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                fields = line.split()
                # "VmRSS:\t   56808 kB"; the kernel always writes kB here.
                if len(fields) >= 2 and fields[1].isdigit():
                    return int(fields[1]) * 1024
                return None
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


@dataclass(frozen=True, slots=True)
class NodeMemory:
    """Resident memory of one running node, in bytes."""

    name: str
    role: str  # "validator" | "full"
    pid: int
    rss: int  # the node process itself (``VmRSS``)
    children_rss: int  # the sum over every process it started, at the time of reading
    processes: int  # the node process and its descendants

    @property
    def tree_rss(self) -> int:
        """The node and everything it started. Pages shared between them (the interpreter, copy-on-write
        memory) are counted once per process, so this is an upper bound of what the node costs."""
        return self.rss + self.children_rss


@dataclass(frozen=True, slots=True)
class MemorySummary:
    """Median, maximum and total over the nodes read, in bytes (all 0 when no node was read)."""

    nodes: int
    median_rss: int
    max_rss: int
    total_rss: int
    median_tree_rss: int
    max_tree_rss: int
    total_tree_rss: int


def node_memory(name: str, role: str, process: psutil.Process) -> NodeMemory | None:
    """The memory of the node whose process is ``process`` (None if it is gone). Descendants that exit
    while they are read are left out."""
    rss = read_vm_rss(process.pid)
    if rss is None:
        return None
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        children = process.children(recursive=True)
    child_rss = [r for r in (read_vm_rss(c.pid) for c in children) if r is not None]
    return NodeMemory(
        name=name,
        role=role,
        pid=process.pid,
        rss=rss,
        children_rss=sum(child_rss),
        processes=1 + len(child_rss),
    )


def summarize_memory(nodes: Sequence[NodeMemory]) -> MemorySummary:
    """Median (the lower middle value for an even count, so that it is one node's figure), maximum and
    total of ``nodes``."""
    if not nodes:
        return MemorySummary(0, 0, 0, 0, 0, 0, 0)
    rss = [n.rss for n in nodes]
    tree = [n.tree_rss for n in nodes]
    return MemorySummary(
        nodes=len(nodes),
        median_rss=statistics.median_low(rss),
        max_rss=max(rss),
        total_rss=sum(rss),
        median_tree_rss=statistics.median_low(tree),
        max_tree_rss=max(tree),
        total_tree_rss=sum(tree),
    )
