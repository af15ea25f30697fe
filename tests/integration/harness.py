"""An in-memory cluster of real Node drivers on the MemoryNetwork, for tests under Trio's virtual clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pnode.client import Client
from p2pnode.config import NodeConfig, config_from_dict
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.genesis import Genesis, ValidatorEntry, chain_id_of, render_genesis
from p2pnode.net.node import Node
from p2pnode.net.transport import MemoryNetwork
from p2pnode.store import MemoryStore, Store
from p2pnode.testing.faults import NodeFaults, faults_for
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    Message,
    SubmitOrder,
    SubmitReply,
)
from p2pnode.wire.types import Address, ChainId, NodeId

BALANCE = 1_000_000


@dataclass
class MemCluster:
    network: MemoryNetwork
    genesis: Genesis
    node_keys: list[NodeKey]
    accounts: list[SpendingKey]
    nodes: list[Node] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    nursery: trio.Nursery | None = None
    seqs: dict[bytes, int] = field(default_factory=dict)
    configs: list[NodeConfig] = field(default_factory=list)
    byzantine: dict[int, str] = field(default_factory=dict)
    store_thread: bool | None = None
    seed: int = 1
    restarts: dict[int, int] = field(default_factory=dict)
    faults: dict[int, NodeFaults] = field(default_factory=dict)  # of the nodes' current runs

    def _node(self, i: int, generation: int = 0) -> Node:
        """Node ``i``; its faults are ``byzantine[i]`` and its config's ``[testing]`` section."""
        cfg = self.configs[i]
        testing = cfg.testing
        role = self.byzantine.get(i, "") or (testing.byzantine if testing.enabled else "")
        faults = self.faults[i] = faults_for(role, fault_control=testing.enabled and testing.fault_control)
        return Node(
            self.configs[i],
            self.node_keys[i],
            self.genesis,
            store=self.stores[i],
            transport=self.network.transport(f"n{i}"),
            rng=random.Random(self.seed * 1000 + i + 100 * generation),
            hooks=faults,
            store_thread=self.store_thread,
        )

    async def stop(self, *idx: int) -> None:
        """Stop these nodes as a crash would: what their store committed is all that survives."""
        for i in idx:
            self.nodes[i].stop()
        for i in idx:
            await self.nodes[i].stopped.wait()

    async def start(self, *idx: int) -> None:
        """Start these (stopped) nodes again from their stores."""
        assert self.nursery is not None
        for i in idx:
            self.restarts[i] = self.restarts.get(i, 0) + 1
            self.nodes[i] = self._node(i, generation=self.restarts[i])
        for i in idx:
            await self.nursery.start(self.nodes[i].run)

    async def restart(self, *idx: int) -> None:
        await self.stop(*idx)
        await self.start(*idx)

    @property
    def chain_id(self) -> ChainId:
        return self.genesis.chain_id

    def host(self, i: int) -> str:
        return f"n{i}"

    async def client(self, i: int) -> Client:
        stream = await self.network.transport("client").connect(self.host(i), 7000)
        return Client(stream)

    async def call(self, i: int, msg: Message) -> Message:
        async with await self.client(i) as c:
            return await c.call(msg)

    async def pay(self, node: int, src: int, dst: int, amount: int, *, wait: bool = True) -> SubmitReply:
        key = self.accounts[src]
        sender = address_of(key.public)
        seq = self.seqs.get(sender, 0)
        order = make_order(key, self.chain_id, address_of(self.accounts[dst].public), amount, seq)
        reply = await self.call(node, SubmitOrder(order=order))
        assert isinstance(reply, SubmitReply)
        if reply.accepted:
            self.seqs[sender] = seq + 1
            if wait:
                with trio.fail_after(60):  # virtual time: a payment that never settles fails the test
                    async with await self.client(node) as c:
                        await c.wait_settled(transfer_digest(order.transfer))
        return reply

    async def balance(self, node: int, account: int) -> int:
        reply = await self.call(node, GetAccount(address=Address(address_of(self.accounts[account].public))))
        assert isinstance(reply, AccountReply)
        return reply.balance

    def roots(self, nodes: list[int] | None = None) -> set[bytes]:
        idx = range(len(self.nodes)) if nodes is None else nodes
        return {self.nodes[i].core.ledger.root() for i in idx}

    async def wait_converged(self, nodes: list[int] | None = None, applied: int | None = None) -> None:
        """Wait (virtual time) until the given nodes share one root (and, if given, the applied count)."""
        idx = list(range(len(self.nodes))) if nodes is None else nodes
        while True:
            counts = {self.nodes[i].core.ledger.applied_count() for i in idx}
            if len(self.roots(idx)) == 1 and (applied is None or counts == {applied}):
                return
            await trio.sleep(0.05)

    async def wait_connected(self, minimum: int) -> None:
        while any(len(n.peers) < minimum for n in self.nodes):
            await trio.sleep(0.05)


def node_config(i: int, bootstrap: list[str], **sections: dict[str, Any]) -> NodeConfig:
    data: dict[str, Any] = {
        "node": {
            "key_file": "k",
            "genesis": "g",
            "data_dir": "d",
            "listen": f"n{i}:7000",
            "bootstrap": bootstrap,
            "name": f"node-{i}",
        },
        "verify": {"workers": 0},
        "gossip": {"heartbeat_ms": 20},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data, Path("."))


def make_genesis(
    validator_keys: list[NodeKey], accounts: list[SpendingKey], shielded_vk: str | None = None
) -> Genesis:
    text = render_genesis(
        "test",
        [(f"v{i}", k.public) for i, k in enumerate(validator_keys)],
        [(address_of(a.public), BALANCE) for a in accounts],
        shielded_vk=shielded_vk,
    )
    return Genesis(
        shielded_vk=shielded_vk,
        chain_name="test",
        chain_id=chain_id_of(text.encode()),
        validators=tuple(
            sorted(
                (ValidatorEntry(f"v{i}", NodeId(k.public)) for i, k in enumerate(validator_keys)),
                key=lambda v: v.node_id,
            )
        ),
        balances=tuple(sorted((Address(address_of(a.public)), BALANCE) for a in accounts)),
    )


def planned(
    validators: int, full_nodes: int, accounts: int, *, seed: int = 1, shielded_vk: str | None = None
) -> tuple[ChainId, list[SpendingKey]]:
    """The chain id and account keys :func:`mem_cluster` will use with the same arguments, for orders
    built before the cluster runs."""
    rng = random.Random(seed)
    keys = [NodeKey.from_seed(rng.randbytes(32)) for _ in range(validators + full_nodes)]
    accts = [SpendingKey.from_bytes((rng.getrandbits(200) + 1).to_bytes(32, "big")) for _ in range(accounts)]
    return make_genesis(keys[:validators], accts, shielded_vk).chain_id, accts


@asynccontextmanager
async def mem_cluster(
    validators: int,
    full_nodes: int = 0,
    accounts: int = 4,
    *,
    seed: int = 1,
    byzantine: dict[int, str] | None = None,
    bootstrap_all: bool = False,
    absent_validators: int = 0,
    shielded_vk: str | None = None,
    store_factory: Callable[[int], Store] | None = None,
    store_thread: bool | None = None,
    **sections: dict[str, Any],
) -> AsyncIterator[MemCluster]:
    """Start validators + full nodes on one MemoryNetwork; node i>0 bootstraps from node 0.

    ``absent_validators`` adds committee members that never run (a committee that cannot vote).
    """
    rng = random.Random(seed)
    keys = [NodeKey.from_seed(rng.randbytes(32)) for _ in range(validators + full_nodes)]
    absent = [NodeKey.from_seed(rng.randbytes(32)) for _ in range(absent_validators)]
    accts = [SpendingKey.from_bytes((rng.getrandbits(200) + 1).to_bytes(32, "big")) for _ in range(accounts)]
    genesis = make_genesis(keys[:validators] + absent, accts, shielded_vk)
    cluster = MemCluster(
        MemoryNetwork(),
        genesis,
        keys,
        accts,
        byzantine=dict(byzantine or {}),
        store_thread=store_thread,
        seed=seed,
    )
    async with trio.open_nursery() as nursery:
        cluster.nursery = nursery
        total = validators + full_nodes
        for i in range(total):
            if bootstrap_all:
                boot = [f"n{j}:7000" for j in range(total) if j != i]
            else:
                boot = ["n0:7000"] if i else (["n1:7000"] if total > 1 else [])
            cluster.configs.append(node_config(i, boot, **sections))
            cluster.stores.append(store_factory(i) if store_factory is not None else MemoryStore())
            node = cluster._node(i)
            cluster.nodes.append(node)
            await nursery.start(node.run)
        yield cluster
        nursery.cancel_scope.cancel()
