"""One interface for clusters under test, whether its nodes run in this process or as processes.

:class:`Cluster` is what :func:`~p2pnode.testing.open_memory_cluster` and
:func:`~p2pnode.testing.open_local_cluster` yield. A test written against it runs on either: the
in-memory cluster (every node in this process, on the in-memory network, deterministic under Trio's
virtual clock) or the local one (real ``p2pnode run`` processes on free ports of 127.0.0.1).

Conventions (Trio style): no call takes a timeout; bound waits with ``trio.fail_after``. Nodes and
accounts may be named by object, by name (``"node-2"``, ``"account-1"``) or by index.

Error handling: a refused payment raises :class:`~p2pnode.client.PaymentRefused` (or
:class:`~p2pnode.client.SlotBlocked`), with the node's reason; an unreachable node raises ``OSError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pnode.client import Client, NodeStatus, Receipt, Wallet
from p2pnode.client import pay as wallet_pay
from p2pnode.crypto import SpendingKey
from p2pnode.wire.messages import Message

CONVERGE_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One node of a cluster: ``name`` ("node-0" …), ``role`` ("validator" or "full"), ``address``
    ("host:port", where clients reach it)."""

    name: str
    role: str
    address: str
    index: int


@dataclass(frozen=True, slots=True)
class ClusterAccount:
    """One funded account: ``name`` ("account-0" …), ``address`` (20 bytes), its spending ``key``
    and, for process clusters, the account ``file`` the CLI takes."""

    name: str
    address: bytes
    key: SpendingKey
    index: int
    file: Path | None = None


NodeRef = ClusterNode | str | int
AccountRef = ClusterAccount | str | int


class Cluster(ABC):
    """The common interface; see the module docstring."""

    nodes: tuple[ClusterNode, ...]
    accounts: tuple[ClusterAccount, ...]
    chain_id: bytes

    def __init__(self) -> None:
        self._wallets: dict[int, Wallet] = {}

    # -- naming ------------------------------------------------------------------------------------
    def node(self, ref: NodeRef) -> ClusterNode:
        if isinstance(ref, ClusterNode):
            return ref
        if isinstance(ref, int):
            return self.nodes[ref]
        for n in self.nodes:
            if n.name == ref:
                return n
        raise KeyError(f"no node {ref!r} in this cluster ({', '.join(n.name for n in self.nodes)})")

    def account(self, ref: AccountRef) -> ClusterAccount:
        if isinstance(ref, ClusterAccount):
            return ref
        if isinstance(ref, int):
            return self.accounts[ref]
        for a in self.accounts:
            if a.name == ref:
                return a
        raise KeyError(f"no account {ref!r} in this cluster")

    @property
    def validators(self) -> tuple[ClusterNode, ...]:
        return tuple(n for n in self.nodes if n.role == "validator")

    # -- what each kind provides -------------------------------------------------------------------
    @abstractmethod
    def client(self, node: NodeRef) -> AbstractAsyncContextManager[Client]:
        """``async with cluster.client(node) as c:`` a :class:`~p2pnode.client.Client` of that node."""

    @abstractmethod
    async def kill(self, node: NodeRef) -> None:
        """Stop ``node`` as a crash would (SIGKILL, or the in-memory equivalent): what its store
        committed is all that survives."""

    @abstractmethod
    async def restart(self, node: NodeRef) -> None:
        """Start ``node`` again from its store (stopping it first if it runs) and wait until it is
        ready (listening, with its peers)."""

    @abstractmethod
    async def partition(self, *groups: Iterable[NodeRef]) -> None:
        """Cut every link between nodes of different groups (nodes in no group keep their links)."""

    @abstractmethod
    async def heal(self) -> None:
        """Undo every partition."""

    @abstractmethod
    def log_files(self) -> dict[str, Path]:
        """Each node's JSON log file (the schema of docs/logs.md), by node name."""

    @abstractmethod
    def running(self) -> list[ClusterNode]:
        """The nodes that are up now (not killed)."""

    # -- the shared operations ---------------------------------------------------------------------
    def wallet(self, account: AccountRef) -> Wallet:
        """The wallet of ``account`` that :meth:`pay` uses (it remembers pending orders and seqs)."""
        acct = self.account(account)
        wallet = self._wallets.get(acct.index)
        if wallet is None:
            wallet = Wallet.from_file(acct.file) if acct.file is not None else Wallet.from_key(acct.key)
            self._wallets[acct.index] = wallet
        return wallet

    async def pay(
        self, sender: AccountRef, recipient: AccountRef | bytes, amount: int, *, via: NodeRef | None = None
    ) -> Receipt:
        """Pay ``amount`` from ``sender`` to ``recipient`` (an account or a 20-byte address) through
        ``via`` (default: the first running node) and return once that node applied it."""
        to = recipient if isinstance(recipient, bytes) else self.account(recipient).address
        node = self.node(via) if via is not None else self.running()[0]
        async with self.client(node) as c:
            return await wallet_pay(c, self.wallet(sender), to, amount)

    async def balance(self, account: AccountRef | bytes, *, via: NodeRef | None = None) -> int:
        """``account``'s balance as ``via`` (default: the first running node) has it durably."""
        address = account if isinstance(account, bytes) else self.account(account).address
        node = self.node(via) if via is not None else self.running()[0]
        async with self.client(node) as c:
            return (await c.account(address)).balance

    async def status(self, node: NodeRef) -> NodeStatus:
        async with self.client(node) as c:
            return await c.status()

    async def call(self, node: NodeRef, request: Message) -> Message:
        """Send one raw request to ``node`` and return its reply, for what the typed calls do not
        cover (an ``ErrorReply`` raises :class:`~p2pnode.errors.RemoteError`)."""
        async with self.client(node) as c:
            return await c.call(request)

    async def wait_converged(
        self, nodes: Sequence[NodeRef] | None = None, *, applied: int | None = None
    ) -> bytes:
        """Wait until ``nodes`` (default: every running node) report one state root and one applied
        count (``applied``, if given: that count); return that root."""
        chosen = [self.node(n) for n in nodes] if nodes is not None else self.running()
        while True:
            seen = [await self.status(n) for n in chosen]
            if len({(s.root, s.applied) for s in seen}) == 1 and applied in (None, seen[0].applied):
                return bytes.fromhex(seen[0].root)
            await trio.sleep(CONVERGE_POLL_S)

    def log_tails(self, lines: int = 20) -> dict[str, list[str]]:
        """The last ``lines`` lines of each node's log, for failure reports."""
        out: dict[str, list[str]] = {}
        for name, path in self.log_files().items():
            try:
                out[name] = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            except OSError:
                out[name] = []
        return out
