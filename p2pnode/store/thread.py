"""A store's commits on one long-lived thread, awaited from Trio without a thread per commit."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import trio

from p2pnode.errors import LocalError, StorageError
from p2pnode.store.sqlite import Store


class StoreThread:
    """One thread that runs every commit of a store, in order.

    Resource handling: ``stop`` ends the thread after the commit in progress. Error handling: a
    failed commit re-raises in the awaiting task, which stops the node rather than acknowledging
    what is not durable: the store's :class:`StorageError` as it is (its ``cause`` intact), anything
    else wrapped in a :class:`LocalError`.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._jobs: queue.SimpleQueue[tuple[list[Any], Callable[[BaseException | None], None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name="p2pnode-store", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            writes, reply = job
            try:
                self._store.commit(writes)
            except BaseException as exc:  # handed to the awaiting task, which re-raises it
                reply(exc)
            else:
                reply(None)

    async def commit(self, writes: list[Any]) -> None:
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        failure: list[BaseException] = []

        def reply(exc: BaseException | None) -> None:
            if exc is not None:
                failure.append(exc)
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # the node stopped while committing; nobody waits for the result

        self._jobs.put((writes, reply))
        with trio.CancelScope(shield=True):  # an acknowledged write must not be abandoned half-way
            await done.wait()
        if failure:
            if isinstance(failure[0], StorageError):
                raise failure[0]  # unchanged: its cause is what the log and the operator need
            raise LocalError(f"store commit failed: {failure[0]}") from failure[0]

    def stop(self) -> None:
        self._jobs.put(None)
