"""A cluster of real node processes (``p2pnode run``) on free ports of 127.0.0.1.

Built on :mod:`p2pnode.localnet` (the cluster directory, the processes, identity-checked readiness)
and :mod:`p2pnode.client`. Partitions use the test-only ``FaultControl`` request, so the nodes are
started with ``[testing] enabled = true, fault_control = true`` unless ``faults=False``.

Resource handling: on leaving the ``async with`` block — normally, by an exception, by cancellation
or by KeyboardInterrupt — every process it started is stopped (SIGTERM, then SIGKILL after a bound).
A temporary directory is removed after a clean exit; after a failure the directory (logs, databases)
is kept and its path is added to the exception's notes. ``keep=True`` always keeps it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from p2pnode.client import Client
from p2pnode.localnet import ClusterDir, ClusterSpec, LocalNet, read_cluster, write_cluster
from p2pnode.localnet.directory import CLUSTER_FILE
from p2pnode.testing.cluster import Cluster, ClusterAccount, ClusterNode, NodeRef
from p2pnode.testing.faults import FaultControl
from p2pnode.wire.types import NodeId

DEFAULT_BALANCE = 1_000_000_000


class LocalCluster(Cluster):
    """See the module docstring; the common interface is :class:`~p2pnode.testing.cluster.Cluster`."""

    def __init__(self, net: LocalNet, *, faults: bool) -> None:
        super().__init__()
        from p2pnode.client import load_account

        self.net = net
        self.cluster: ClusterDir = net.cluster
        self.directory = net.cluster.directory
        self.chain_id = net.cluster.chain_id
        self.faults = faults
        self.nodes = tuple(ClusterNode(e.name, e.role, e.address, i) for i, e in enumerate(net.cluster.nodes))
        self.accounts = tuple(
            ClusterAccount(a.name, a.address, load_account(a.path), i, a.path)
            for i, a in enumerate(net.cluster.accounts)
        )
        self._blocked: dict[str, set[bytes]] = {}

    def client(self, node: NodeRef) -> AbstractAsyncContextManager[Client]:
        n = self.node(node)
        entry = self.cluster.node(n.name)

        @asynccontextmanager
        async def connected() -> AsyncIterator[Client]:
            async with await Client.connect(entry.host, entry.port) as c:
                yield c

        return connected()

    def running(self) -> list[ClusterNode]:
        up = self.net.running()
        return [n for n in self.nodes if n.name in up]

    async def kill(self, node: NodeRef) -> None:
        await trio.to_thread.run_sync(self.net.kill, self.node(node).name)

    async def restart(self, node: NodeRef) -> None:
        name = self.node(node).name
        if name in self.net.running():
            await trio.to_thread.run_sync(self.net.stop, name)
        self.net.start(name)
        await self.net.wait_ready([name])
        blocked = self._blocked.get(name)
        if blocked:  # a restarted process forgot its partition: tell it again
            await self._control(name, blocked)

    async def partition(self, *groups: Iterable[NodeRef]) -> None:
        if not self.faults:
            raise RuntimeError("partition needs a cluster opened with faults=True")
        sides = [[self.node(n) for n in g] for g in groups]
        for i, side in enumerate(sides):
            others = {
                bytes.fromhex(self.cluster.node(n.name).node_id)
                for j, s in enumerate(sides)
                if j != i
                for n in s
            }
            for n in side:
                self._blocked[n.name] = self._blocked.get(n.name, set()) | others
        async with trio.open_nursery() as nursery:
            for name, blocked in self._blocked.items():
                nursery.start_soon(self._control, name, blocked)

    async def heal(self) -> None:
        names = list(self._blocked)
        self._blocked.clear()
        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(self._control, name, set())

    async def _control(self, name: str, blocked: set[bytes]) -> None:
        async with self.client(name) as c:
            await c.call(FaultControl(blocked=tuple(sorted(NodeId(b) for b in blocked)), delay_ms=0))

    def log_files(self) -> dict[str, Path]:
        return {e.name: e.log for e in self.cluster.nodes}


@asynccontextmanager
async def open_local_cluster(
    *,
    validators: int = 4,
    full_nodes: int = 0,
    accounts: int = 8,
    balance: int = DEFAULT_BALANCE,
    shielded: bool = False,
    directory: Path | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    faults: bool = True,
    keep: bool = False,
) -> AsyncIterator[LocalCluster]:
    """Write a cluster (or reuse the one in ``directory``), start one process per node, wait until
    each answers with the expected chain id and node id and has its peers, and yield it.

    ``config``: node config sections for every node (e.g. ``{"sync": {"interval_ms": 200}}``);
    ``shielded=True`` needs the Node.js toolchain (README, "The Node.js toolchain").
    """
    temporary = directory is None
    where = Path(tempfile.mkdtemp(prefix="p2pnode-cluster-")) if directory is None else Path(directory)
    sections: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (config or {}).items()}
    if faults:
        sections.setdefault("testing", {}).update(enabled=True, fault_control=True)
    if (where / CLUSTER_FILE).exists():
        cluster = read_cluster(where)
    else:
        spec = ClusterSpec(
            validators=validators,
            full_nodes=full_nodes,
            accounts=accounts,
            balance=balance,
            shielded=shielded,
            defaults=sections,
        )
        cluster = await trio.to_thread.run_sync(lambda: write_cluster(spec, where))
    net = LocalNet(cluster)
    clean = False
    try:
        net.start()
        await net.wait_ready()
        yield LocalCluster(net, faults=faults)
        clean = True
    except BaseException as exc:
        exc.add_note(f"p2pnode cluster directory kept: {where}")
        raise
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(net.stop)
        if clean and temporary and not keep:
            shutil.rmtree(where, ignore_errors=True)
