"""Proof verification off the event loop, batched when work queues up.

``workers = 0`` verifies inline on the loop (deterministic; in-process tests under a virtual clock).
``workers >= 1`` runs batches in that many worker processes, so that verification uses the other core
and the Trio loop stays free for gossip, votes and keepalives.

IPC: each worker is a spawned process at the other end of one socket pair, and the Trio loop itself
writes the request and waits for the reply on that socket (:class:`trio.lowlevel.FdStream`). No thread
stands between the loop and a worker. ``concurrent.futures.ProcessPoolExecutor``, used before, passes
every call through a queue-feeder thread and a manager thread (two more wake-ups and GIL hand-overs
each way): about 2 ms per round trip on a loaded 2-core host, against about 0.4 ms for the socket, and
a payment's critical path holds two proof checks. The genesis verifying key goes to a worker once, at
its start, not with every batch.

Framing on the socket is that of :class:`multiprocessing.connection.Connection` (a 4-byte big-endian
signed length, then the bytes), which the worker uses as it is. Both ends are this program; a request
is a pickled list of items, a reply a pickled ``(True, (results, duration_us))`` or ``(False, error
text)``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import signal
import struct
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import trio

from p2pnode.core.budget import TokenBucket
from p2pnode.crypto import schnorr_batch_verify, schnorr_verify
from p2pnode.errors import LocalError

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


def _worker_main(conn: Connection, vk_json: str | None) -> None:
    """A worker process: builds its tables, then answers one request at a time until the node closes
    its end of the socket."""
    _worker_init()
    verify_batch([], vk_json)
    while True:
        try:
            items = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the node closed its end: it is stopping
        try:
            reply: tuple[bool, Any] = (True, verify_batch(items, vk_json))
        except Exception:  # a bug in a verifier: the node stops with its traceback (LocalError)
            reply = (False, traceback.format_exc())
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            return


_HEADER = struct.Struct("!i")


class _Worker:
    """One worker process and the loop's end of its socket; one request in flight at a time.

    Error handling: a worker that exits (killed, out of memory) or answers with an error raises
    :class:`LocalError` in the waiting task. A request cancelled half-way leaves the socket out of
    step, so the caller discards the worker (``kill``) and a fresh one takes its place.
    """

    def __init__(self, ctx: Any, vk_json: str | None) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.process: Any = ctx.Process(
            target=_worker_main, args=(child, vk_json), name="p2pnode-verify", daemon=True
        )
        try:
            self.process.start()
        finally:
            child.close()
        self._stream = trio.lowlevel.FdStream(os.dup(parent.fileno()))
        parent.close()
        self._buffer = bytearray()

    async def call(self, items: list[Item]) -> tuple[list[bool], int]:
        payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            await self._stream.send_all(_HEADER.pack(len(payload)) + payload)
            (size,) = _HEADER.unpack(await self._read(_HEADER.size))
            ok, value = pickle.loads(await self._read(size))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise self._gone() from exc
        if not ok:
            raise LocalError(f"proof verification failed in worker pid {self.process.pid}:\n{value}")
        results: tuple[list[bool], int] = value
        return results

    async def _read(self, n: int) -> bytes:
        buf = self._buffer
        while len(buf) < n:
            chunk = await self._stream.receive_some(max(65536, n - len(buf)))
            if not chunk:
                raise self._gone()
            buf += chunk
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def _gone(self) -> LocalError:
        self.process.join(timeout=0.1)
        return LocalError(
            f"proof verification worker pid {self.process.pid} exited (exit code {self.process.exitcode})"
        )

    def kill(self) -> None:
        """Close the socket and end the process (it may be mid-batch: that result is not wanted)."""
        self._stream.close()
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=1.0)


# An inline budget is kept over this window: at most ``rate * INLINE_WINDOW_S`` of loop time goes to
# inline work back to back (10 ms at 100 ms/s: a few proofs).
INLINE_WINDOW_S = 0.1


class LoopCredit:
    """How much event-loop time a kind of inline work (a proof check, a store commit) may still take.

    A token bucket of seconds of loop time, refilled at ``ms_per_s`` milliseconds per second of (Trio)
    time and capped at ``INLINE_WINDOW_S`` of that rate; ``allowed`` says whether some is left,
    ``charge`` takes what the work cost, however deep in debt that leaves it (the long-run rate holds
    even after one long piece of work). ``ms_per_s = 0`` never allows. The work costs the same CPU
    inline or elsewhere; what the credit bounds is how long the loop (every peer's and client's
    frames) may wait behind it."""

    def __init__(self, ms_per_s: int) -> None:
        rate = ms_per_s / 1000  # seconds of loop time per second
        self._bucket = TokenBucket(rate=rate, burst=rate * INLINE_WINDOW_S, max_debt=math.inf)

    def allowed(self, now: float) -> bool:
        return self._bucket.available(now) > 0

    def charge(self, seconds: float) -> None:
        """Take the cost of work done since the last ``allowed`` (no refill in between)."""
        self._bucket.charge(self._bucket.stamp, seconds)


class ProofVerifier:
    """Verifies batches inline (``workers = 0``) or in up to ``workers`` worker processes, one batch in
    flight per worker; processes start on first use (or ``warm_up``).

    Inline single proofs (``inline_ms_per_s``): with workers, a batch of one transparent (Schnorr)
    proof, i.e. one that arrived while the verifier was idle, is verified on the loop itself as long as
    inline verification has taken at most ``inline_ms_per_s`` milliseconds of loop time per second
    (a credit refilled at that rate, capped at ``INLINE_WINDOW_S`` of it). The proof costs the same CPU
    either way, and inline it skips the round trip to the worker (two process wake-ups, 0.4 ms on an
    idle host and several ms on a busy one), which at light load is the larger part of its latency.
    Under load proofs queue up while one is checked and go to the workers as batches, and the credit
    bounds how much of the loop single proofs can take. Shielded (Groth16) proofs never run inline.

    Resource handling: ``close`` ends the worker processes (the node calls it when ``run`` ends).
    """

    def __init__(self, workers: int, vk_json: str | None = None, *, inline_ms_per_s: int = 0) -> None:
        self.workers = workers
        self.vk_json = vk_json
        self._inline = LoopCredit(inline_ms_per_s)
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._live: list[_Worker] = []
        self._free = trio.Semaphore(max(1, workers))
        self.batches = 0
        self.proofs = 0
        self.inline = 0  # batches verified on the loop although workers exist (``inline_ms_per_s``)

    @property
    def processes(self) -> list[int]:
        """Pids of the live worker processes."""
        return [w.process.pid for w in self._live]

    async def verify(self, items: Sequence[Item]) -> tuple[list[bool], int]:
        self.batches += 1
        self.proofs += len(items)
        if self.workers == 0:
            await trio.lowlevel.checkpoint()
            return verify_batch(items, self.vk_json)
        if len(items) == 1 and items[0][0] == "t" and self._inline.allowed(trio.current_time()):
            self.inline += 1
            await trio.lowlevel.checkpoint()
            results, duration_us = verify_batch(items, self.vk_json)
            self._inline.charge(duration_us / 1e6)
            return results, duration_us
        return await self._run(list(items))

    async def _run(self, items: list[Item]) -> tuple[list[bool], int]:
        async with self._free:
            worker = self._idle.pop() if self._idle else self._spawn()
            try:
                result = await worker.call(items)
            except BaseException:
                self._discard(worker)
                raise
            self._idle.append(worker)
            return result

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx, self.vk_json)
        self._live.append(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        self._live.remove(worker)
        worker.kill()

    async def warm_up(self) -> None:
        """Start the worker processes now (imports, fixed-base tables) rather than on the first payment."""
        if self.workers == 0:
            return
        while len(self._live) < self.workers:
            self._idle.append(self._spawn())
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._run, [])

    def close(self) -> None:
        for worker in self._live:
            worker.kill()
        self._live.clear()
        self._idle.clear()
