"""A cluster whose nodes all run in this process, on the in-memory network.

Every node is a real :class:`p2pnode.net.node.Node` (the same driver and core as ``p2pnode run``) with
an in-memory store and transport. Under Trio's virtual clock (pytest-trio's ``autojump_clock``
fixture, or ``trio.testing.MockClock(autojump_threshold=0)``) a test runs in a fraction of a second
of wall time. Keys, accounts and every node's random choices derive from ``seed``; Trio itself
randomizes the order in which it runs ready tasks, so what depends on who got there first (which
nodes connect to which during bring-up, and so the gossip topology) differs from run to run.

Proofs are real (Schnorr over BN254, Ed25519 votes); they are verified in this process
(``[verify] workers = 0``), so CPU time is real even when the clock is virtual.

Links: every node's transport is wrapped in :class:`p2pnode.net.links.FaultyTransport`, the wrapper a
real node runs for a ``[network]`` profile. ``network=PROFILE`` places the nodes on the profile's
regions (``profile.place``) and applies its link model to every connection on the virtual clock;
:meth:`MemoryCluster.partition` / :meth:`~MemoryCluster.heal` and ``FaultControl`` (partitions and the
``slow`` delay, which adds to the profile's) go through the same wrapper, so there is one fault
mechanism for links.

Resource handling: leaving the ``async with`` block stops every node; nothing outlives it.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import structlog
import trio

from p2pnode.client import Client
from p2pnode.config import NodeConfig, config_from_dict
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.genesis import Genesis, ValidatorEntry, chain_id_of, render_genesis
from p2pnode.net.linkmodel import NetworkProfile, load_profile
from p2pnode.net.links import LinkModel
from p2pnode.net.node import Node
from p2pnode.net.transport import MemoryNetwork
from p2pnode.store import MemoryStore, Store
from p2pnode.testing.cluster import Cluster, ClusterAccount, ClusterNode, NodeRef
from p2pnode.testing.faults import LinkControl, faults_for
from p2pnode.wire.types import Address, ChainId, NodeId

BALANCE = 1_000_000_000
PORT = 7000


def _keys(
    seed: int, nodes: int, absent: int, accounts: int
) -> tuple[list[NodeKey], list[NodeKey], list[SpendingKey]]:
    rng = random.Random(seed)
    keys = [NodeKey.from_seed(rng.randbytes(32)) for _ in range(nodes)]
    missing = [NodeKey.from_seed(rng.randbytes(32)) for _ in range(absent)]
    accts = [SpendingKey.from_bytes((rng.getrandbits(200) + 1).to_bytes(32, "big")) for _ in range(accounts)]
    return keys, missing, accts


def make_genesis(
    validator_keys: Iterable[NodeKey],
    accounts: Iterable[SpendingKey],
    *,
    balance: int = BALANCE,
    shielded_vk: str | None = None,
    chain_name: str = "test",
) -> Genesis:
    """A genesis naming these validators and funding these accounts with ``balance`` each."""
    vkeys, accts = list(validator_keys), list(accounts)
    text = render_genesis(
        chain_name,
        [(f"v{i}", k.public) for i, k in enumerate(vkeys)],
        [(address_of(a.public), balance) for a in accts],
        shielded_vk=shielded_vk,
    )
    return Genesis(
        shielded_vk=shielded_vk,
        chain_name=chain_name,
        chain_id=chain_id_of(text.encode()),
        validators=tuple(
            sorted(
                (ValidatorEntry(f"v{i}", NodeId(k.public)) for i, k in enumerate(vkeys)),
                key=lambda v: v.node_id,
            )
        ),
        balances=tuple(sorted((Address(address_of(a.public)), balance) for a in accts)),
    )


def planned(
    validators: int = 4,
    full_nodes: int = 0,
    accounts: int = 8,
    *,
    seed: int = 0,
    balance: int = BALANCE,
    shielded_vk: str | None = None,
    absent_validators: int = 0,
) -> tuple[ChainId, list[SpendingKey]]:
    """The chain id and account keys :func:`open_memory_cluster` uses with the same arguments, for
    orders (and proofs) built before the cluster runs."""
    keys, absent, accts = _keys(seed, validators + full_nodes, absent_validators, accounts)
    genesis = make_genesis(keys[:validators] + absent, accts, balance=balance, shielded_vk=shielded_vk)
    return genesis.chain_id, accts


def node_config(
    i: int, bootstrap: list[str], sections: Mapping[str, Mapping[str, Any]] | None = None
) -> NodeConfig:
    data: dict[str, Any] = {
        "node": {
            "key_file": "k",
            "genesis": "g",
            "data_dir": "d",
            "listen": f"n{i}:{PORT}",
            "bootstrap": bootstrap,
            "name": f"node-{i}",
        },
        "verify": {"workers": 0},
        "gossip": {"heartbeat_ms": 20},
    }
    for name, values in (sections or {}).items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data, Path("."))


class _VirtualTimeStamper:
    """``ts_ns`` on Trio's clock (virtual under MockClock), so latency tools read memory runs too."""

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["ts_ns"] = int(trio.current_time() * 1e9)
        return event


class MemoryCluster(Cluster):
    """See the module docstring; the common interface is :class:`~p2pnode.testing.cluster.Cluster`."""

    def __init__(
        self,
        *,
        network: MemoryNetwork,
        genesis: Genesis,
        node_keys: list[NodeKey],
        account_keys: list[SpendingKey],
        validators: int,
        configs: list[NodeConfig],
        stores: list[Store],
        seed: int,
        byzantine: Mapping[int, str],
        log_dir: Path | None,
        store_thread: bool | None,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        profile: NetworkProfile | None = None,
    ) -> None:
        super().__init__()
        self.profile = profile
        # node name -> region, and "host:port" -> region for the link models (shared, grows on join)
        self.regions: dict[str, str] = {}
        self._addr_regions: dict[str, str] = {}
        self._links: dict[int, LinkControl] = {}
        self._blocked: dict[int, set[int]] = {}  # node index -> indices it is partitioned from
        self._config_sections: Mapping[str, Mapping[str, Any]] = config or {}
        self.network = network
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.node_keys = node_keys
        self.configs = configs
        self.stores = stores
        self.seed = seed
        self.log_dir = log_dir
        self._store_thread = store_thread
        self.byzantine = dict(byzantine)
        self._restarts: dict[int, int] = {}
        self._logs: dict[int, TextIO] = {}
        self.nursery: trio.Nursery | None = None
        self.nodes = tuple(
            ClusterNode(f"node-{i}", "validator" if i < validators else "full", f"n{i}:{PORT}", i)
            for i in range(len(node_keys))
        )
        self.accounts = tuple(
            ClusterAccount(f"account-{i}", address_of(k.public), k, i) for i, k in enumerate(account_keys)
        )
        self.drivers: list[Node] = []  # the running Node objects, by index (replaced on restart)
        self._down: set[int] = set()
        self._place()

    def _place(self) -> None:
        if self.profile is None:
            return
        self.regions = self.profile.place([n.name for n in self.nodes])
        self._addr_regions.clear()
        self._addr_regions.update({n.address: self.regions[n.name] for n in self.nodes})

    # -- nodes -------------------------------------------------------------------------------------
    def driver(self, node: NodeRef) -> Node:
        """The in-process :class:`~p2pnode.net.node.Node` of ``node`` (its ``core`` holds the state)."""
        return self.drivers[self.node(node).index]

    def _make(self, i: int) -> Node:
        """Node ``i``'s next run. Its faults are ``byzantine[i]`` and, as for ``p2pnode run``, its
        config's ``[testing]`` section (``config={"testing": {"enabled": True, "fault_control": True}}``
        makes every node answer ``FaultControl``)."""
        generation = self._restarts.get(i, 0)
        testing = self.configs[i].testing
        role = self.byzantine.get(i, "") or (testing.byzantine if testing.enabled else "")
        model = None
        if self.profile is not None:
            name = self.nodes[i].name
            model = LinkModel(
                profile=self.profile,
                region=self.regions[name],
                regions=self._addr_regions,
                name=f"{name}/{generation}",
                seed=self.seed,
            )
        links = self._links[i] = LinkControl(model)
        return Node(
            self.configs[i],
            self.node_keys[i],
            self.genesis,
            store=self.stores[i],
            transport=self.network.transport(f"n{i}"),
            rng=random.Random(self.seed * 1000 + i + 100 * generation),
            hooks=faults_for(role, fault_control=testing.enabled and testing.fault_control, links=links),
            store_thread=self._store_thread,
            log=self._logger(i),
        )

    def _logger(self, i: int) -> Any:
        """Node ``i``'s own JSON log file under ``log_dir`` (None: the process's structlog setup)."""
        if self.log_dir is None:
            return None
        sink = self._logs.get(i)
        if sink is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            sink = self._logs[i] = (self.log_dir / f"node-{i}.log").open("a", buffering=1, encoding="utf-8")
        return structlog.wrap_logger(
            structlog.PrintLogger(sink),
            processors=[
                structlog.processors.add_log_level,
                _VirtualTimeStamper(),
                structlog.processors.JSONRenderer(),
            ],
        ).bind(node=f"node-{i}", node_id=self.node_keys[i].public.hex()[:16])

    async def _start(self, i: int) -> None:
        assert self.nursery is not None
        node = self._make(i)
        if i < len(self.drivers):
            self.drivers[i] = node
        else:
            self.drivers.append(node)
        if self._blocked.get(i):  # a restarted node is still on its side of the partition
            self._apply_partition(i)
        await self.nursery.start(node.run)
        self._down.discard(i)

    async def kill(self, node: NodeRef) -> None:
        i = self.node(node).index
        if i in self._down:
            return
        self.drivers[i].stop()
        await self.drivers[i].stopped.wait()
        self._down.add(i)

    async def restart(self, node: NodeRef) -> None:
        i = self.node(node).index
        await self.kill(i)
        await self.start(i)
        await self.wait_ready([i])

    async def start(self, node: NodeRef) -> None:
        """Start a killed ``node`` again from its store and return once it runs (its store is loaded),
        without waiting for peers: for nodes that are down across several steps (:meth:`kill`, …,
        ``start``) and for starting several at once (then :meth:`wait_ready`). A node that runs is
        left alone."""
        i = self.node(node).index
        if i not in self._down:
            return
        self._restarts[i] = self._restarts.get(i, 0) + 1
        await self._start(i)

    async def join(self, *, bootstrap: Iterable[NodeRef]) -> ClusterNode:
        """Add a full node that was not there at the start: a new key (from the seed), an empty
        in-memory store, ``bootstrap`` its only known addresses. Returns once it has a peer; from then
        on it is one of :attr:`nodes` (so :meth:`wait_converged` waits for it too)."""
        i = len(self.nodes)
        boot = [self.node(n).address for n in bootstrap]
        key = NodeKey.from_seed(random.Random(f"join-{self.seed}-{i}").randbytes(32))
        self.configs.append(node_config(i, boot, self._config_sections))
        self.node_keys.append(key)
        self.stores.append(MemoryStore())
        self.nodes = (*self.nodes, ClusterNode(f"node-{i}", "full", f"n{i}:{PORT}", i))
        self._place()
        await self._start(i)
        await self.wait_ready([i])
        return self.nodes[i]

    async def wait_ready(self, nodes: Iterable[NodeRef] | None = None, *, peers: int = 1) -> None:
        """Until each of ``nodes`` (default: all running) has at least ``peers`` peers."""
        chosen = (
            [self.node(n).index for n in nodes] if nodes is not None else [n.index for n in self.running()]
        )
        while any(len(self.drivers[i].peers) < peers for i in chosen):
            await trio.sleep(0.01)

    def running(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.index not in self._down]

    # -- links -------------------------------------------------------------------------------------
    def links(self, node: NodeRef) -> LinkControl:
        """The link control of ``node``'s current run (its ``transport`` is the wrapper)."""
        return self._links[self.node(node).index]

    async def partition(self, *groups: Iterable[NodeRef]) -> None:
        """Cut every link between nodes of different groups (nodes in no group keep theirs): each
        side blocks the other's addresses and drops its connections to the other's node ids, through
        its transport wrapper (:meth:`LinkControl.apply`). Partitions add up until :meth:`heal`."""
        sides = [[self.node(n).index for n in g] for g in groups]
        for a, side in enumerate(sides):
            others = {j for b, s in enumerate(sides) if b != a for j in s}
            for i in side:
                self._blocked.setdefault(i, set()).update(others)
        for i in sorted(self._blocked):
            self._apply_partition(i)

    async def heal(self) -> None:
        """Undo every partition: unblock, and forget the dial backoff so nodes reconnect at once."""
        was = sorted(self._blocked)
        self._blocked.clear()
        for i in was:
            self._apply_partition(i)

    def _apply_partition(self, i: int) -> None:
        others = self._blocked.get(i, set())
        ids = frozenset(bytes(self.node_keys[j].public) for j in others)
        self._links[i].apply(self.drivers[i], ids, addrs={self.nodes[j].address for j in others})

    # -- clients and logs --------------------------------------------------------------------------
    def client(self, node: NodeRef) -> AbstractAsyncContextManager[Client]:
        n = self.node(node)

        @asynccontextmanager
        async def connected() -> AsyncIterator[Client]:
            stream = await self.network.transport("client").connect(f"n{n.index}", PORT)
            async with Client(stream, name=n.name) as c:
                yield c

        return connected()

    def log_files(self) -> dict[str, Path]:
        if self.log_dir is None:
            return {}
        return {f"node-{i}": self.log_dir / f"node-{i}.log" for i in range(len(self.nodes))}

    def close_logs(self) -> None:
        for sink in self._logs.values():
            sink.close()
        self._logs.clear()


@asynccontextmanager
async def open_memory_cluster(
    *,
    validators: int = 4,
    full_nodes: int = 0,
    accounts: int = 8,
    balance: int = BALANCE,
    seed: int = 0,
    shielded_vk: str | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    byzantine: Mapping[int, str] | None = None,
    absent_validators: int = 0,
    bootstrap_all: bool = True,
    stores: Callable[[int], Store] | None = None,
    store_thread: bool | None = None,
    log_dir: Path | None = None,
    network: NetworkProfile | Path | str | None = None,
) -> AsyncIterator[MemoryCluster]:
    """Start ``validators`` + ``full_nodes`` nodes in this process and yield the cluster once every
    node has a peer.

    - ``accounts`` funded accounts (``balance`` each); ``seed`` fixes every key and random choice.
    - ``shielded_vk``: a Groth16 verifying key (snarkjs JSON) to enable the shielded pool.
    - ``config``: node config sections to override, e.g. ``{"sync": {"interval_ms": 200}}``.
    - ``byzantine``: node index -> test-only Byzantine role (``p2pnode.testing.faults``).
    - ``absent_validators``: committee members that never run (a committee short of a quorum).
    - ``bootstrap_all``: every node knows every other's address (else a chain from node 0).
    - ``stores``: node index -> store (default: an in-memory store per node that survives restarts).
    - ``log_dir``: write each node's JSON log there (``ts_ns`` on the virtual clock), readable by
      ``p2pnode latency``.
    - ``network``: a network profile (or its file, ``configs/network/*.toml``): node ``node-i`` is
      placed by ``profile.place`` and every connection crosses the profile's links on the virtual
      clock (:mod:`p2pnode.net.links`; ``cluster.regions`` says where each node is).
    """
    profile = load_profile(network) if isinstance(network, (str, Path)) else network
    total = validators + full_nodes
    keys, absent, accts = _keys(seed, total, absent_validators, accounts)
    genesis = make_genesis(keys[:validators] + absent, accts, balance=balance, shielded_vk=shielded_vk)
    configs: list[NodeConfig] = []
    for i in range(total):
        if bootstrap_all:
            boot = [f"n{j}:{PORT}" for j in range(total) if j != i]
        else:
            boot = [f"n0:{PORT}"] if i else ([f"n1:{PORT}"] if total > 1 else [])
        configs.append(node_config(i, boot, config))
    cluster = MemoryCluster(
        network=MemoryNetwork(),
        genesis=genesis,
        node_keys=keys,
        account_keys=accts,
        validators=validators,
        configs=configs,
        stores=[stores(i) if stores is not None else MemoryStore() for i in range(total)],
        seed=seed,
        byzantine=byzantine or {},
        log_dir=log_dir,
        store_thread=store_thread,
        config=config,
        profile=profile,
    )
    try:
        async with trio.open_nursery() as nursery:
            cluster.nursery = nursery
            for i in range(total):
                await cluster._start(i)
            if total > 1:
                await cluster.wait_ready()
            yield cluster
            nursery.cancel_scope.cancel()
    finally:
        cluster.close_logs()
