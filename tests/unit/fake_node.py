"""A stand-in node for wallet and CLI tests: answers client requests from a small, scripted state.

``FakeNode.serve(stream)`` speaks the client protocol over any trio stream (memory streams under a
virtual clock); ``threaded_server(node)`` runs it on a real 127.0.0.1 socket in a thread, for tests
that drive ``p2pnode`` through ``cli.main`` (which calls ``trio.run`` itself).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio
import trio.testing

from p2pnode.client import Client
from p2pnode.core.payments import transfer_digest
from p2pnode.wire import codec
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    GetNotes,
    Message,
    NotesReply,
    SettledReply,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    SubmitReply,
    SubmitShielded,
    WaitSettled,
    decode,
)
from p2pnode.wire.types import Address, Amount, Digest, Seq

CHAIN_ID = bytes(range(32))


@dataclass
class FakeNode:
    """Accounts hold (balance, next_seq); a submitted transfer at the account's next seq settles at
    once (``settle=False``: never); ``silent`` answers nothing; ``wrong`` answers every request of that
    type with a message of another type; ``close_on`` closes the connection on that request type."""

    accounts: dict[bytes, list[int]] = field(default_factory=dict)
    settle: bool = True
    silent: bool = False
    refuse: str = ""
    blocked: str = ""
    blocked_slots: list[dict[str, Any]] = field(default_factory=list)
    wrong: type[Message] | None = None
    close_on: type[Message] | None = None
    submitted: list[bytes] = field(default_factory=list)  # encoded orders, in arrival order
    settled: set[bytes] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    outputs: list[tuple[bytes, bytes, bool]] = field(default_factory=list)  # (commitment, memo, spent)
    page: int = 4096  # outputs per NotesReply

    def respond(self, msg: Message) -> Message | None:
        self.requests.append(type(msg).__name__)
        if self.silent:
            return None
        if self.wrong is not None and isinstance(msg, self.wrong):
            if isinstance(msg, StatusRequest):
                return AccountReply(address=Address(b"\0" * 20), balance=Amount(0), next_seq=Seq(0))
            return StatusReply(info={})
        if isinstance(msg, StatusRequest):
            info: dict[str, Any] = {"chain_id": CHAIN_ID.hex(), "applied": len(self.settled)}
            if self.blocked_slots:
                info["blocked_slots"] = self.blocked_slots
            return StatusReply(info=info)
        if isinstance(msg, GetAccount):
            balance, next_seq = self.accounts.get(msg.address, [0, 0])
            return AccountReply(
                address=msg.address, balance=Amount(balance), next_seq=Seq(next_seq), blocked=self.blocked
            )
        if isinstance(msg, SubmitOrder):
            t = msg.order.transfer
            digest = transfer_digest(t)
            self.submitted.append(msg.order.encode())
            if self.refuse:
                return SubmitReply(digest=digest, accepted=False, error=self.refuse)
            acct = self.accounts.setdefault(t.sender, [0, 0])
            if self.settle and t.seq == acct[1]:
                acct[0] -= t.amount
                acct[1] += 1
                self.settled.add(digest)
            return SubmitReply(digest=digest, accepted=True, error="")
        if isinstance(msg, SubmitShielded):
            self.submitted.append(msg.order.encode())
            return SubmitReply(digest=Digest(b"\0" * 32), accepted=True, error="")
        if isinstance(msg, WaitSettled):
            return SettledReply(
                digest=msg.digest,
                settled=msg.digest in self.settled,
                root=b"\x07" * 32,
                applied=len(self.settled),
                blocked=self.blocked,
            )
        if isinstance(msg, GetNotes):
            chunk = self.outputs[msg.start : msg.start + min(msg.limit, self.page)]
            return NotesReply(notes=tuple(chunk), next=msg.start + len(chunk), total=len(self.outputs))
        raise AssertionError(f"unexpected request {msg!r}")

    async def serve(self, stream: trio.abc.Stream) -> None:
        """Answer requests on ``stream`` until the client closes it."""
        decoder = codec.FrameDecoder()
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                for raw in decoder.feed(bytes(data)):
                    msg = decode(raw)
                    if self.close_on is not None and isinstance(msg, self.close_on):
                        return
                    reply = self.respond(msg)
                    if reply is None:
                        await trio.sleep_forever()
                    if isinstance(reply, SettledReply) and not reply.settled and not reply.blocked:
                        await trio.sleep(msg.wait_ms / 1000)  # virtual time
                    await stream.send_all(codec.frame(reply.encode()))


@contextmanager
def threaded_server(node: FakeNode, reset_on: type[Message] | None = None) -> Iterator[int]:
    """Serve ``node`` on 127.0.0.1 in a thread (one connection at a time); yields the port.

    ``reset_on``: on that request type, close the socket with an RST (SO_LINGER 0) instead of answering.
    A silent node holds the connection open until the test ends."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.1)
    port = int(srv.getsockname()[1])
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        decoder = codec.FrameDecoder()
        conn.settimeout(0.1)
        while not stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for raw in decoder.feed(data):
                msg = decode(raw)
                if reset_on is not None and isinstance(msg, reset_on):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                    return
                reply = node.respond(msg)
                if reply is None:
                    continue  # silent: never answers
                if isinstance(reply, SettledReply) and not reply.settled and not reply.blocked:
                    stop.wait(min(msg.wait_ms, 50) / 1000)  # pace the poll
                conn.sendall(codec.frame(reply.encode()))

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                handle(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        srv.close()


T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` under Trio's virtual clock."""
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


async def with_client(node: FakeNode, body: Callable[[Client], Awaitable[T]]) -> T:
    """``body`` with a :class:`Client` connected to ``node`` over a memory stream."""
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node.serve, theirs)
        async with Client(ours, name="fake:1") as client:
            result = await body(client)
        nursery.cancel_scope.cancel()
    return result
