"""The effect interpreter's verify loop and store writer, against a stand-in core and store.

The store's commit runs on the real store thread and blocks until the test releases it, so the test
can look at what happened while a lock was not yet durable. Every wait is on an event; no sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import trio

from p2pnode.core.budget import Trust
from p2pnode.core.effects import Effect, Emit, PersistApplied, PersistLock, VerifyProofs
from p2pnode.core.payments import make_order, statement_digest
from p2pnode.crypto import SpendingKey, address_of
from p2pnode.net.interpreter import Interpreter
from p2pnode.store.sqlite import MemoryStore, Write
from p2pnode.wire.messages import Order
from p2pnode.wire.types import ChainId, Digest

CHAIN = ChainId(b"\x07" * 32)
PAYER = SpendingKey.from_bytes((5).to_bytes(32, "big"))
PAYEE = address_of(SpendingKey.from_bytes((6).to_bytes(32, "big")).public)


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields.get("tx", "")))

    info = warning = error = _add


class Core:
    """Answers each verified proof with a lock and an effect after it; votes once the lock is durable."""

    def __init__(self) -> None:
        self.voted: list[Digest] = []
        self.all_voted = trio.Event()
        self.expect = 0

    def verify_lane(self, now: float, digest: Digest, order: Order) -> str:
        return "peer"

    def on_locks_committed(self, digests: Iterable[Digest]) -> None:
        self.committed = getattr(self, "committed", []) + list(digests)

    def lane_trust(self, now: float, lane: object) -> Trust:
        return Trust.TRUSTED

    def still_wanted(self, digest: Digest, order: Order) -> bool:
        return True

    def on_proofs_verified(
        self, now: float, results: Iterable[tuple[Digest, Order, bool, int, int]]
    ) -> list[Effect]:
        out: list[Effect] = []
        for digest, order, _, _, _ in results:
            t = order.transfer
            out += [
                Emit("proof_verified", {"tx": digest.hex()}),
                PersistLock(((t.sender, t.seq),), digest, order.encode()),
                Emit("after_lock", {"tx": digest.hex()}),
            ]
        return out

    def on_lock_persisted(self, now: float, digest: Digest) -> list[Effect]:
        self.voted.append(digest)
        if len(self.voted) == self.expect:
            self.all_voted.set()
        return [Emit("vote_sent", {"tx": digest.hex()})]

    def on_durable(self, now: float, writes: list[PersistApplied]) -> list[Effect]:
        return []


class HeldStore(MemoryStore):
    """Commits block until ``release`` is set; each commit start is reported to the Trio loop."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        super().__init__()
        self.release = threading.Event()
        self.started = trio.Event()
        self._token = token

    def commit(self, writes: Sequence[Write]) -> None:
        self._token.run_sync_soon(self.started.set)
        self.release.wait()
        super().commit(writes)


class Verifier:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.done = trio.Event()

    async def verify(self, items: Sequence[Any]) -> tuple[list[bool], int]:
        await trio.lowlevel.checkpoint()
        self.batches.append(len(items))
        self.done.set()
        return [True] * len(items), 5


def interpreter(
    core: Core, store: MemoryStore, verifier: Verifier, log: Log, inline_commit_ms_per_s: int = 0
) -> Interpreter:
    cfg = SimpleNamespace(
        verify=SimpleNamespace(batch_max=64, new_source_batch=4),
        limits=SimpleNamespace(pending_orders=100, inline_commit_ms_per_s=inline_commit_ms_per_s),
        gossip=SimpleNamespace(heartbeat_ms=50),
    )
    return Interpreter(
        cfg=cfg,  # type: ignore[arg-type]
        core=core,  # type: ignore[arg-type]
        store=store,
        verifier=verifier,  # type: ignore[arg-type]
        outbox=SimpleNamespace(),  # type: ignore[arg-type]
        waiters=SimpleNamespace(),  # type: ignore[arg-type]
        log=log,
        store_thread=True,
    )


async def test_the_verify_loop_goes_on_while_a_lock_commits() -> None:
    """The next proof is verified while the previous one's lock is still being committed; what follows
    each lock (its vote, then the effects after it) still waits for that lock's commit."""
    core, log, verifier = Core(), Log(), Verifier()
    store = HeldStore(trio.lowlevel.current_trio_token())
    it = interpreter(core, store, verifier, log)
    first, second = (make_order(PAYER, CHAIN, PAYEE, 1, seq) for seq in (0, 1))
    d1, d2 = statement_digest(first), statement_digest(second)
    core.expect = 2
    async with trio.open_nursery() as nursery:
        nursery.start_soon(it.writer)
        nursery.start_soon(it.verify)
        try:
            await it.perform([VerifyProofs(((d1, first),))])
            await store.started.wait()  # the first lock's commit is running (and held)
            verifier.done = trio.Event()
            await it.perform([VerifyProofs(((d2, second),))])
            with trio.fail_after(10):  # a safety bound only: it returns at once unless the loop waits
                await verifier.done.wait()  # verified while the first commit is still held
            assert verifier.batches == [1, 1]
            assert core.voted == [] and store.commits == 0
            assert [e for e, _ in log.lines] == ["proof_verified", "proof_verified"]
            store.release.set()
            await core.all_voted.wait()
            nursery.cancel_scope.cancel()
        finally:
            store.release.set()  # never leave the store thread blocked, also on failure
    assert core.voted == [d1, d2]
    events = [(e, tx) for e, tx in log.lines]
    # each lock durable before its vote, and the vote before what followed the lock
    for d in (d1, d2):
        tx = d.hex()
        assert events.index(("vote_sent", tx)) < events.index(("after_lock", tx))
    assert [x[2] for x in store.snapshot.locks] == [d1, d2]  # committed in the order produced


class ThreadStore(MemoryStore):
    """Records the thread each commit ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def commit(self, writes: Sequence[Write]) -> None:
        self.threads.append(threading.get_ident())
        super().commit(writes)


async def _commit_locks(it: Interpreter, core: Core, n: int) -> None:
    """Performs ``n`` locks one after another, each awaited (its vote logged) before the next."""
    core.expect = n
    async with trio.open_nursery() as nursery:
        nursery.start_soon(it.writer)
        for seq in range(n):
            order = make_order(PAYER, CHAIN, PAYEE, 1, seq)
            t = order.transfer
            await it.perform([PersistLock(((t.sender, t.seq),), statement_digest(order), order.encode())])
        nursery.cancel_scope.cancel()


async def test_a_commit_with_nothing_else_to_run_is_done_on_the_loop() -> None:
    """With the store thread and a loop-time credit, a lone commit runs on the loop's own thread
    (durable when it returns, its vote after it); with no credit every commit goes to the thread."""
    for budget, inline in ((1000, True), (0, False)):
        core, log, store = Core(), Log(), ThreadStore()
        it = interpreter(core, store, Verifier(), log, inline_commit_ms_per_s=budget)
        await _commit_locks(it, core, 3)
        loop_thread = threading.get_ident()
        assert len(store.threads) == 3
        assert all((t == loop_thread) is inline for t in store.threads), budget
        assert it.inline_commits == (3 if inline else 0)
        assert [e for e, _ in log.lines] == ["vote_sent"] * 3
        assert [x[2] for x in store.snapshot.locks] == core.voted


async def test_inline_commits_stop_when_the_credit_is_spent(autojump_clock: trio.testing.MockClock) -> None:
    """The credit (1 ms/s, capped at INLINE_WINDOW_S of it: 0.1 ms) is spent by the first real commit
    with no time passing; the next commits go to the thread until virtual time refills it."""
    core, log, store = Core(), Log(), SlowStore()
    it = interpreter(core, store, Verifier(), log, inline_commit_ms_per_s=1)
    await _commit_locks(it, core, 3)
    assert it.inline_commits == 1 and len(store.threads) == 3
    await trio.sleep(1.0)
    await _commit_locks(it, core, 1)
    assert it.inline_commits == 2


class SlowStore(ThreadStore):
    """A commit that takes at least a millisecond of real time, as an fsync does."""

    def commit(self, writes: Sequence[Write]) -> None:
        deadline = time.perf_counter() + 0.001
        while time.perf_counter() < deadline:
            pass
        super().commit(writes)
