"""Proof verification off the event loop, batched when work queues up.

``workers = 0`` verifies inline on the loop (deterministic; in-process tests under a virtual clock).
``workers >= 1`` runs batches in that many worker processes, so that verification uses the other core
and the Trio loop stays free for gossip, votes and keepalives.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

import trio

from p2pnode.crypto import schnorr_batch_verify

Item = tuple[bytes, bytes, bytes]  # (public key, message, proof)


def verify_batch(items: Sequence[Item]) -> tuple[list[bool], int]:
    """Verify a batch; returns per-item results and the wall time in microseconds."""
    start = time.perf_counter_ns()
    if not items:
        from p2pnode.crypto.bn254 import g1_mul_base

        g1_mul_base(1)  # builds the fixed-base table
        return [], 0
    if len(items) == 1:
        from p2pnode.crypto import schnorr_verify

        results = [schnorr_verify(*items[0])]
    else:
        results = schnorr_batch_verify(items)
    return results, (time.perf_counter_ns() - start) // 1000


class ProofVerifier:
    """Resource handling: ``aclose`` (or leaving ``run``) shuts the worker processes down."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
        self._limiter = trio.CapacityLimiter(max(1, workers))
        self.batches = 0
        self.proofs = 0

    async def verify(self, items: Sequence[Item]) -> tuple[list[bool], int]:
        self.batches += 1
        self.proofs += len(items)
        if self._pool is None:
            await trio.lowlevel.checkpoint()
            return verify_batch(items)
        results: tuple[list[bool], int] = await self._run(verify_batch, list(items))
        return results

    async def _run(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in a worker process; wake the Trio loop from the pool's callback (no
        thread per call)."""
        assert self._pool is not None
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        fut = self._pool.submit(fn, *args)

        def wake(_: concurrent.futures.Future[Any]) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # the node is shutting down; nobody waits any more

        fut.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            fut.cancel()
            raise
        return fut.result()

    async def warm_up(self) -> None:
        """Start the worker processes now (imports, fixed-base tables) rather than on the first payment."""
        if self._pool is not None:
            async with trio.open_nursery() as nursery:
                for _ in range(self.workers):
                    nursery.start_soon(self._run, verify_batch, [])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
