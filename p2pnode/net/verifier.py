"""Proof verification off the event loop, batched when work queues up.

``workers = 0`` verifies inline on the loop (deterministic; in-process tests under a virtual clock).
``workers >= 1`` runs batches in that many worker processes, so that verification uses the other core
and the Trio loop stays free for gossip, votes and keepalives.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import signal
import time
from collections.abc import Sequence
from typing import Any

import trio

from p2pnode.crypto import schnorr_batch_verify, schnorr_verify

# ("t", public key, message, proof): a Schnorr proof of a transparent transfer;
# ("z", public signals, Groth16 proof bytes, optional Schnorr item of a shield's account).
Item = tuple[Any, ...]

_vk_cache: dict[str, Any] = {}


def _verifying_key(vk_json: str) -> Any:
    vk = _vk_cache.get(vk_json)
    if vk is None:
        from p2pnode.crypto.groth16 import VerifyingKey

        vk = _vk_cache[vk_json] = VerifyingKey.from_json(json.loads(vk_json))
    return vk


def _verify_shielded(vk_json: str | None, items: Sequence[Item]) -> list[bool]:
    from p2pnode.crypto.groth16 import (
        InvalidElementError,
        MalformedError,
        groth16_batch_verify,
        groth16_verify,
        proof_from_bytes,
    )

    if vk_json is None:
        return [False] * len(items)
    vk = _verifying_key(vk_json)
    parsed: list[tuple[int, Any, Sequence[int]]] = []
    results = [False] * len(items)
    for i, (_, public, proof_bytes, account) in enumerate(items):
        if account is not None and not schnorr_verify(*account):
            continue
        try:
            parsed.append((i, proof_from_bytes(proof_bytes), public))
        except (MalformedError, InvalidElementError):
            continue
    if len(parsed) > 1 and groth16_batch_verify(vk, [(p, pub) for _, p, pub in parsed]):
        for i, _, _ in parsed:
            results[i] = True
        return results
    for i, proof, public in parsed:  # one bad proof in the batch: find it
        results[i] = groth16_verify(vk, proof, public)
    return results


def verify_batch(items: Sequence[Item], vk_json: str | None = None) -> tuple[list[bool], int]:
    """Verify a batch of either kind; returns per-item results and the wall time in microseconds."""
    start = time.perf_counter_ns()
    if not items:
        from p2pnode.crypto.bn254 import g1_mul_base

        g1_mul_base(1)  # builds the fixed-base table
        if vk_json is not None:
            _verifying_key(vk_json)
        return [], 0
    results = [False] * len(items)
    plain = [i for i, item in enumerate(items) if item[0] == "t"]
    shielded = [i for i, item in enumerate(items) if item[0] == "z"]
    if len(plain) == 1:
        results[plain[0]] = schnorr_verify(*items[plain[0]][1:])
    elif plain:
        for i, ok in zip(plain, schnorr_batch_verify([items[i][1:] for i in plain]), strict=True):
            results[i] = ok
    if shielded:
        for i, ok in zip(shielded, _verify_shielded(vk_json, [items[i] for i in shielded]), strict=True):
            results[i] = ok
    return results, (time.perf_counter_ns() - start) // 1000


def _worker_init() -> None:
    """Worker processes ignore SIGINT: Ctrl-C reaches the whole process group, and the parent node
    stops its workers itself (``close``); a worker must not die mid-batch with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProofVerifier:
    """Resource handling: ``aclose`` (or leaving ``run``) shuts the worker processes down."""

    def __init__(self, workers: int, vk_json: str | None = None) -> None:
        self.workers = workers
        self.vk_json = vk_json
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
            )
        self.batches = 0
        self.proofs = 0

    async def verify(self, items: Sequence[Item]) -> tuple[list[bool], int]:
        self.batches += 1
        self.proofs += len(items)
        if self._pool is None:
            await trio.lowlevel.checkpoint()
            return verify_batch(items, self.vk_json)
        results: tuple[list[bool], int] = await self._run(verify_batch, list(items), self.vk_json)
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
                    nursery.start_soon(self._run, verify_batch, [], self.vk_json)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
