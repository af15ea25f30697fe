"""The command line's one time budget per command, and the typed failures it prints.

Exit codes (see :mod:`p2pnode.cli.main`): a :class:`~p2pnode.client.Refused` operation exits 1,
whatever refused it (a node, the ledger, the wallet's own checks); every other
:class:`~p2pnode.errors.P2PNodeError` (bad usage, configuration, an unreachable or silent node, a
broken connection) exits 2.

``--timeout`` bounds a whole command: connecting, every request, waiting for the account lock and for
settlement. The library takes no timeouts; :func:`run_within` runs the command's body under one
``trio.fail_after`` and, when it expires, turns the step the client was in
(:class:`~p2pnode.client.Progress`) into the error that names it.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from p2pnode.client import Client, NodeTimeout, NotSettled, Progress, Step, WalletBusy
from p2pnode.client.progress import LOCK, SETTLE
from p2pnode.config import parse_hostport
from p2pnode.errors import P2PNodeError, Terminated

__all__ = ["Terminated", "connect", "deadline_error", "run_terminable", "run_within", "within"]

T = TypeVar("T")


def deadline_error(step: Step | None, seconds: float) -> P2PNodeError:
    """The error for a deadline of ``seconds`` that expired in ``step``."""
    s = f"{seconds:g}"
    if step is None:
        return NodeTimeout(f"timed out after {s}s")
    facts = step.facts
    if step.kind == LOCK:
        lock = str(facts.get("lock"))
        return WalletBusy(
            f"account {facts.get('account')} is in use by another p2pnode command (lock {lock}): "
            f"not free within {s}s",
            lock=lock,
        )
    if step.kind == SETTLE:
        tx = str(facts.get("tx"))
        return NotSettled(
            f"not settled within {s}s: tx {tx} was accepted by {facts.get('node')} "
            "and may still settle (the wallet completes it next time)",
            tx=tx,
        )
    return NodeTimeout(f"no {step.what} within {s}s")


async def within(seconds: float, progress: Progress, body: Callable[[], Awaitable[T]]) -> T:
    """``await body()`` under a deadline of ``seconds``; on expiry the :func:`deadline_error` of the
    step ``progress`` was in."""
    try:
        with trio.fail_after(seconds):
            return await body()
    except trio.TooSlowError:
        raise deadline_error(progress.current, seconds) from None


def run_terminable(body: Callable[[], Awaitable[T]]) -> T:
    """``trio.run`` of ``body()``; SIGTERM cancels it like Ctrl-C, so that its cleanup (stopping the
    node processes it started) runs before the command exits with :class:`Terminated`. Without this
    a terminated command would leave its nodes running."""

    async def main() -> T:
        result: list[T] = []
        terminated = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal terminated
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        terminated = True
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(watch)
            result.append(await body())
            nursery.cancel_scope.cancel()
        if terminated or not result:
            raise Terminated("terminated (SIGTERM)")
        return result[0]

    return trio.run(main)


def run_within(seconds: float, body: Callable[[Progress], Awaitable[T]]) -> T:
    """``trio.run`` of ``body(progress)`` bounded by ``seconds`` (see :func:`within`)."""
    progress = Progress()
    return trio.run(within, seconds, progress, lambda: body(progress))


async def connect(node: str, progress: Progress) -> Client:
    """A client of ``--node HOST:PORT`` whose steps are noted in ``progress``."""
    host, port = parse_hostport(node, key="--node")
    return await Client.connect(host, port, progress=progress)
