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
        pool = self._pool
        fut = pool.submit(verify_batch, list(items))
        return await trio.to_thread.run_sync(fut.result, abandon_on_cancel=True, limiter=self._limiter)

    async def warm_up(self) -> None:
        """Start the worker processes now (imports, fixed-base tables) rather than on the first payment."""
        if self._pool is not None:
            futures = [self._pool.submit(verify_batch, []) for _ in range(self.workers)]
            for fut in futures:
                await trio.to_thread.run_sync(fut.result, abandon_on_cancel=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
