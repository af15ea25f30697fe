"""The effect interpreter: performs the core's effects, runs the group-commit store writer, the proof
verifier loop and the heartbeat ticker.

Effects are performed in order (see :mod:`p2pnode.core.effects`): sends go to the peer's bounded
queue (``Outbox.send``; a full queue drops the message and counts it), persistence is awaited before
anything after it, and log events are written as structlog lines.

Durable before visible: the writes of one effect list are queued before the first await, so the
store commits them in the order the core produced them, across all tasks; the writer reports
applied certificates durable to the core (``on_durable``) right after their commit returned, in
that order, and only then are waiting clients told "settled" and the waiting tasks go on. A failed
commit (``store_failed``) stops the node: nothing after it is acknowledged and no vote waits on it.

Proof verification: queued proofs wait in one lane per source (``NodeCore.verify_lane``;
:class:`p2pnode.core.budget.VerifyQueue`). Right before each batch the driver asks the core which
queued proofs are still wanted (``NodeCore.still_wanted``: a penalized or disconnected peer's work is
skipped, never verified) and how far each lane is trusted (``NodeCore.lane_trust``), and takes the
batch :func:`p2pnode.core.budget.choose_batch` names: certificates first, a round of trusted sources,
then one small batch from a new source (``verify.new_source_batch``) or one proof from a suspect
one. A bisection over bad proofs therefore only ever delays an honest proof by one small batch.

Client connections are named to the core by their task (``trio.lowlevel.current_task()``, one task
per connection); ``CloseClient`` for the connection being served raises :class:`ClientCut`, which
ends that connection (the client server treats it as a remote error).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

import trio

from p2pnode.config import NodeConfig
from p2pnode.core.budget import VerifyQueue
from p2pnode.core.effects import (
    Blocked,
    CloseClient,
    Disconnect,
    Effect,
    Emit,
    OrderOutcome,
    PersistApplied,
    PersistLock,
    Send,
    Settled,
    VerifyProofs,
)
from p2pnode.core.node import NodeCore
from p2pnode.core.shielded import public_signals
from p2pnode.errors import LocalError, RemoteError, StorageError
from p2pnode.net.metrics import NodeMetrics
from p2pnode.net.verifier import LoopCredit, ProofVerifier
from p2pnode.store import Store
from p2pnode.store.thread import StoreThread
from p2pnode.wire.messages import Message, Order, ShieldedOrder
from p2pnode.wire.types import Digest, NodeId


class ClientCut(RemoteError):
    """This client connection sent too many invalid proofs: it is closed."""


class Outbox(Protocol):
    """Where ``Send`` and ``Disconnect`` effects go (the peer connections)."""

    def send(self, nid: bytes, msg: Message) -> None: ...

    def penalize(self, nid: bytes, reason: str) -> None: ...


class Waiters(Protocol):
    """Who waits on outcomes and settlement (the client-request server)."""

    def on_settled(self, digest: Digest) -> None: ...

    def on_outcome(self, e: OrderOutcome) -> None: ...


class Interpreter:
    def __init__(
        self,
        *,
        cfg: NodeConfig,
        core: NodeCore,
        store: Store,
        verifier: ProofVerifier,
        outbox: Outbox,
        waiters: Waiters,
        log: Any,
        store_thread: bool,
    ) -> None:
        self.cfg = cfg
        self.core = core
        self.store = store
        self.verifier = verifier
        self.outbox = outbox
        self.waiters = waiters
        self.log = log
        # Proofs to verify, one lane per source; bounded by the core's own bound on work in flight
        # (``limits.pending_orders`` entries in ``NodeCore.verifying``) once unwanted items are
        # compacted away (``_queue_proof``).
        self._verify_queue: VerifyQueue[tuple[Digest, Order | ShieldedOrder]] = VerifyQueue(
            batch_max=cfg.verify.batch_max, new_batch=cfg.verify.new_source_batch
        )
        self._verify_ready = trio.Event()
        self._verify_cap = cfg.limits.pending_orders
        self.skipped = 0  # queued proofs dropped unverified (their sources were cut off)
        # Writes in the order the core produced them; bounded by the core's own bounds on what can
        # be in flight (pending orders, held certificates), so appending never waits.
        self._writes: deque[tuple[PersistLock | PersistApplied, trio.Event]] = deque()
        self._writes_ready = trio.Event()
        # Commits on a thread of their own (a real node), or inline (deterministic in-process tests).
        self._store_thread = store_thread
        # With the thread: a commit found with nothing else to run is done on the loop, within this.
        self._inline_commits = LoopCredit(cfg.limits.inline_commit_ms_per_s)
        self.inline_commits = 0  # commits done on the loop although the store thread exists
        self.metrics: NodeMetrics | None = None  # the node sets it when [metrics] is on

    async def perform(self, effects: list[Effect]) -> None:
        # Queue this list's writes before anything can yield, so that the commit order is the order
        # the core changed its state in, whatever other tasks do meanwhile.
        tickets = self._enqueue_writes(effects)
        await self._perform_from(effects, tickets, 0)

    def _enqueue_writes(self, effects: list[Effect]) -> dict[int, trio.Event]:
        return {
            i: self._enqueue_write(e)
            for i, e in enumerate(effects)
            if isinstance(e, (PersistLock, PersistApplied))
        }

    async def _perform_from(self, effects: list[Effect], tickets: dict[int, trio.Event], start: int) -> None:
        """Perform ``effects[start:]`` in order, each write awaited before what follows it."""
        i = self._perform_until_write(effects, start)
        while i < len(effects):
            e = effects[i]
            await tickets[i].wait()
            if isinstance(e, PersistLock):
                await self.perform(self.core.on_lock_persisted(trio.current_time(), e.digest))
            # a PersistApplied: the writer already made it visible (on_durable)
            i = self._perform_until_write(effects, i + 1)

    def _perform_until_write(self, effects: list[Effect], start: int) -> int:
        """Perform the effects from ``start`` up to the next write (which needs its commit awaited);
        returns that write's index, or ``len(effects)``. Never yields."""
        for i in range(start, len(effects)):
            e = effects[i]
            if isinstance(e, Send):
                self.outbox.send(e.peer, e.msg)
            elif isinstance(e, Emit):
                self.log.info(e.event, **e.fields)
            elif isinstance(e, VerifyProofs):
                for item in e.orders:
                    self._queue_proof(item)
            elif isinstance(e, (PersistLock, PersistApplied)):
                return i
            elif isinstance(e, Settled):
                self.waiters.on_settled(e.digest)
            elif isinstance(e, Blocked):
                for digest in e.digests:
                    self.waiters.on_settled(digest)  # wakes the wait; the reply names the block
            elif isinstance(e, OrderOutcome):
                self.waiters.on_outcome(e)
            elif isinstance(e, Disconnect):
                self.outbox.penalize(NodeId(e.peer), e.reason)
            elif isinstance(e, CloseClient):
                if e.source is trio.lowlevel.current_task():
                    self.log.warning("client_cut", reason=e.reason)
                    raise ClientCut(e.reason)
                # Found out while verifying: the connection is cut at its next request.
                self.log.warning("client_penalized", reason=e.reason)
        return len(effects)

    def _queue_proof(self, item: tuple[Digest, Order | ShieldedOrder]) -> None:
        q = self._verify_queue
        if len(q) >= self._verify_cap:
            self.skipped += q.compact(lambda i: self.core.still_wanted(*i))
        if len(q) >= self._verify_cap:
            self.log.warning("verify_queue_full", tx=item[0].hex())
            return
        q.push(self.core.verify_lane(trio.current_time(), *item), item)
        self._verify_ready.set()

    def _enqueue_write(self, write: PersistLock | PersistApplied) -> trio.Event:
        done = trio.Event()
        self._writes.append((write, done))
        self._writes_ready.set()
        return done

    async def writer(self) -> None:
        """Group commit: everything queued while a commit runs goes into the next one.

        After a commit returns, its applied certificates become visible to clients (the core's
        ``on_durable``, whose ``Settled`` effects wake waiting clients), then the waiting tasks go
        on. With ``store_thread`` commits run on one long-lived thread that owns the SQLite
        connection; starting a thread per commit cost more CPU than the commit. A commit found with
        nothing else to run is done on the loop instead, within ``limits.inline_commit_ms_per_s``
        (``_commit_inline``): the same transaction, durable when it returns, without the hand-offs.

        Error handling: a failed commit is logged as ``store_failed`` with its cause and re-raised,
        which stops the node; the writes in it and after it are never acknowledged.
        """
        thread: StoreThread | None = StoreThread(self.store) if self._store_thread else None
        try:
            while True:
                await self._writes_ready.wait()
                self._writes_ready = trio.Event()
                batch = list(self._writes)
                self._writes.clear()
                if not batch:
                    continue
                writes = [w for w, _ in batch]
                started = time.perf_counter()
                try:
                    if thread is not None and not self._commit_inline():
                        await thread.commit(writes)
                    else:
                        self.store.commit(writes)
                        if thread is not None:
                            self.inline_commits += 1
                            self._inline_commits.charge(time.perf_counter() - started)
                except StorageError as exc:
                    self.log.error("store_failed", cause=exc.cause, error=exc.detail, writes=len(writes))
                    raise
                except LocalError as exc:  # the store thread failed in another way: our bug
                    self.log.error("store_failed", cause="database error", error=str(exc), writes=len(writes))
                    raise
                if self.metrics is not None:
                    self.metrics.committed(time.perf_counter() - started, len(writes))
                locks = [w.digest for w in writes if isinstance(w, PersistLock)]
                if locks:  # signed together by the first waiting task that goes on (one batch)
                    self.core.on_locks_committed(locks)
                applied = [w for w in writes if isinstance(w, PersistApplied)]
                if applied:
                    await self.perform(self.core.on_durable(trio.current_time(), applied))
                for _, done in batch:
                    done.set()
        finally:
            if thread is not None:
                thread.stop()

    def _commit_inline(self) -> bool:
        """Whether this commit (the store thread exists) is done on the loop: no other task is waiting
        to run and the loop-time credit (``limits.inline_commit_ms_per_s``) lasts. At light load this
        takes the two thread hand-offs out of the lock's and the applied certificate's latency; under
        load other tasks are runnable or the credit is spent, and commits go to the thread."""
        if trio.lowlevel.current_statistics().tasks_runnable:
            return False
        return self._inline_commits.allowed(trio.current_time())

    async def verify(self) -> None:
        """Proof verification, one batch at a time, off the event loop.

        Each batch is one lane's (one source's, or the certificates'), chosen right before it is
        verified (:func:`p2pnode.core.budget.choose_batch`): at most ``verify.batch_max`` proofs from
        certificates and trusted sources, ``verify.new_source_batch`` from a new source, one from a
        suspect source. Items no source wants any more are skipped without verifying (counted in
        ``skipped``).

        No timer: a proof that arrives while the verifier is idle is verified at once (alone), and
        what queues up while a batch runs is the next batch. The loop does not wait for the commits
        its results cause (a validator's lock before its vote): the effects up to the first write are
        performed at once, the rest, in order, by a task of its own once the commit returned, while
        the next batch is verified."""
        q = self._verify_queue
        core = self.core
        async with trio.open_nursery() as nursery:
            while True:
                while not q:
                    self._verify_ready = trio.Event()
                    await self._verify_ready.wait()
                _, batch, skipped = q.take(
                    lambda lane: core.lane_trust(trio.current_time(), lane),
                    lambda i: core.still_wanted(*i),
                    lambda i: core.verify_lane(trio.current_time(), *i),
                )
                self.skipped += skipped
                if batch:
                    await self._verify_batch(batch, nursery)

    async def _verify_batch(
        self, items: list[tuple[Digest, Order | ShieldedOrder]], nursery: trio.Nursery | None = None
    ) -> None:
        work = [verify_item(digest, order) for digest, order in items]
        results, duration_us = await self.verifier.verify(work)
        if self.metrics is not None:
            self.metrics.proofs_verified(duration_us / 1e6, results)
        per = duration_us // max(1, len(items))
        out = [
            (digest, order, ok, per, len(items)) for (digest, order), ok in zip(items, results, strict=True)
        ]
        effects = self.core.on_proofs_verified(trio.current_time(), out)
        tickets = self._enqueue_writes(effects)
        i = self._perform_until_write(effects, 0)
        if i == len(effects):
            return
        if nursery is None:
            await self._perform_from(effects, tickets, i)
        else:
            nursery.start_soon(self._perform_from, effects, tickets, i)

    async def tick(self) -> None:
        """The core's heartbeat, every ``gossip.heartbeat_ms``."""
        period = self.cfg.gossip.heartbeat_ms / 1000
        while True:
            await trio.sleep(period)
            await self.perform(self.core.tick(trio.current_time()))


def verify_item(digest: Digest, order: Order | ShieldedOrder) -> tuple[Any, ...]:
    """What a verification worker needs for one order (see ``p2pnode.net.verifier.Item``)."""
    if isinstance(order, Order):
        return ("t", order.sender_key, digest, order.proof)
    account = (order.account_key, digest, order.account_proof) if order.account_key else None
    return ("z", public_signals(order.tx), order.proof, account)


__all__ = ["Interpreter", "Outbox", "Waiters", "verify_item"]
