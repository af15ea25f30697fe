"""The proof verifier: worker processes on a socket driven by the Trio loop, and inline single proofs.

The inline budget is tested under Trio's virtual clock (``autojump_clock``); the worker tests start one
real worker process each (no node, no network) and wait on its answers, never on a sleep.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import trio
import trio.testing

from p2pnode.crypto.schnorr import SpendingKey
from p2pnode.errors import LocalError
from p2pnode.net import verifier
from p2pnode.net.verifier import INLINE_WINDOW_S, LoopCredit, ProofVerifier, verify_batch

KEY = SpendingKey.generate()


def item(message: bytes = b"m" * 32, *, good: bool = True) -> verifier.Item:
    proof = KEY.prove(message)
    if not good:
        proof = KEY.prove(b"another message")
    return ("t", KEY.public, message, proof)


class Recorder(ProofVerifier):
    """Records what would go to a worker instead of starting one (answers every proof valid)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(1, **kw)
        self.sent: list[int] = []

    async def _run(self, items: list[verifier.Item]) -> tuple[list[bool], int]:
        self.sent.append(len(items))
        await trio.lowlevel.checkpoint()
        return [True] * len(items), 1


async def test_single_proof_inline_while_the_budget_lasts(autojump_clock: trio.testing.MockClock) -> None:
    v = Recorder(inline_ms_per_s=100)
    one = [item()]
    results, duration_us = await v.verify(one)
    assert results == [True] and duration_us > 0
    assert (v.inline, v.sent) == (1, [])
    # The credit (100 ms/s, at most INLINE_WINDOW_S of it: 10 ms) runs out after a few real proof
    # checks with no virtual time passing; then single proofs go to the worker.
    while not v.sent:
        await v.verify(one)
        assert v.inline < 100
    assert v.sent == [1]
    inline = v.inline
    # Virtual time refills it: a second later single proofs run inline again.
    await trio.sleep(1.0)
    await v.verify(one)
    assert v.inline == inline + 1 and v.sent == [1]


async def test_batches_and_shielded_proofs_never_inline(autojump_clock: trio.testing.MockClock) -> None:
    v = Recorder(inline_ms_per_s=1000)
    await v.verify([item(), item(b"x" * 32)])
    await v.verify([("z", [1, 2], b"proof", None)])
    assert v.inline == 0 and v.sent == [2, 1]


async def test_inline_off_with_zero_budget(autojump_clock: trio.testing.MockClock) -> None:
    v = Recorder(inline_ms_per_s=0)
    await v.verify([item()])
    await trio.sleep(10)
    await v.verify([item()])
    assert v.inline == 0 and v.sent == [1, 1]


async def test_inline_result_is_the_real_check(autojump_clock: trio.testing.MockClock) -> None:
    v = Recorder(inline_ms_per_s=1000)
    assert (await v.verify([item(good=False)]))[0] == [False]
    assert (await v.verify([item()]))[0] == [True]
    assert v.sent == []


async def test_worker_round_trip() -> None:
    v = ProofVerifier(workers=1)
    try:
        await v.warm_up()
        assert len(v.processes) == 1
        pid = v.processes[0]
        results, duration_us = await v.verify([item(), item(good=False), item(b"y" * 32)])
        assert results == [True, False, True] and duration_us > 0
        assert (await v.verify([item()]))[0] == [True]
        assert v.processes == [pid]  # one long-lived worker, no process per batch
        assert (v.batches, v.proofs, v.inline) == (2, 4, 0)  # warm_up is not counted
    finally:
        v.close()
    assert v.processes == []


async def test_worker_that_dies_stops_with_a_local_error() -> None:
    v = ProofVerifier(workers=1)
    try:
        await v.warm_up()
        pid = v.processes[0]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(LocalError, match="worker pid .* exited"):
            await v.verify([item(), item(b"z" * 32)])
        assert v.processes == []  # discarded; the next batch would start a fresh worker
        assert (await v.verify([item(), item(b"z" * 32)]))[0] == [True, True]
        assert len(v.processes) == 1 and v.processes[0] != pid
    finally:
        v.close()


async def test_cancelled_request_discards_its_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request cancelled while its answer is awaited leaves the socket out of step: that worker is
    ended and not used again."""
    v = ProofVerifier(workers=1)
    sent = trio.Event()
    read = verifier._Worker._read

    async def noting_read(self: verifier._Worker, n: int) -> bytes:
        sent.set()  # the request is on the socket
        return await read(self, n)

    monkeypatch.setattr(verifier._Worker, "_read", noting_read)
    try:
        await v.warm_up()
        pid = v.processes[0]
        sent = trio.Event()
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def request() -> None:
                with scope:
                    await v.verify([item()] * 8)

            nursery.start_soon(request)
            await sent.wait()
            scope.cancel()
        assert scope.cancelled_caught
        assert pid not in v.processes
        assert (await v.verify([item(), item(b"q" * 32)]))[0] == [True, True]
    finally:
        v.close()


def test_worker_main_answers_until_eof() -> None:
    """The worker loop itself, in this process over a pipe: one answer per request, quiet exit on EOF."""
    import multiprocessing
    import pickle
    import threading

    before = signal.getsignal(signal.SIGINT)
    parent, child = multiprocessing.Pipe(duplex=True)
    t = threading.Thread(target=verifier._worker_main, args=(child, None))
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # _worker_init sets SIGINT to ignored: only allowed on the main thread, so call it here first
        verifier._worker_init()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    original = verifier._worker_init
    verifier._worker_init = lambda: None  # type: ignore[assignment]
    try:
        t.start()
        parent.send_bytes(pickle.dumps([item(), item(good=False)]))
        ok, (results, _) = pickle.loads(parent.recv_bytes())
        assert ok and results == [True, False]
        parent.send_bytes(pickle.dumps([("t", "not bytes")]))  # a bug-shaped request: an error reply
        ok, text = pickle.loads(parent.recv_bytes())
        assert not ok and "Traceback" in text
        parent.close()
        t.join(timeout=10)
        assert not t.is_alive()
    finally:
        verifier._worker_init = original  # type: ignore[assignment]


def test_inline_window_bounds_a_burst() -> None:
    assert 0 < INLINE_WINDOW_S <= 1
    assert verify_batch([]) == ([], 0)


async def test_loop_credit_refills_at_its_rate_up_to_its_cap(autojump_clock: trio.testing.MockClock) -> None:
    credit = LoopCredit(100)  # 100 ms per s, capped at INLINE_WINDOW_S of it: 10 ms
    assert credit.allowed(trio.current_time())
    credit.charge(0.015)  # one piece of work may overdraw it; then nothing until it is paid back
    assert not credit.allowed(trio.current_time())
    await trio.sleep(0.04)  # +4 ms: still 1 ms short
    assert not credit.allowed(trio.current_time())
    await trio.sleep(0.02)  # +2 ms: 1 ms left
    assert credit.allowed(trio.current_time())
    await trio.sleep(100.0)  # the cap: 10 ms however long it rested
    assert credit.allowed(trio.current_time())
    credit.charge(0.0101)
    assert not credit.allowed(trio.current_time())
    assert not LoopCredit(0).allowed(trio.current_time())
