"""Hostile or broken peers are refused with a logged reason; the node keeps serving everyone else."""

from __future__ import annotations

import secrets
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
import trio

from p2pnode.core.payments import handshake_digest
from p2pnode.crypto import NodeKey
from p2pnode.net.conn import FramedStream
from p2pnode.testing import MemoryCluster, open_memory_cluster
from p2pnode.wire import codec
from p2pnode.wire.messages import Hello, HelloAuth, Refuse
from p2pnode.wire.types import PROTOCOL_VERSION


def hello(key: NodeKey, chain_id: bytes, nonce: bytes | None = None) -> Hello:
    return Hello(
        version=PROTOCOL_VERSION,
        chain_id=chain_id,
        node_id=key.public,
        nonce=nonce or secrets.token_bytes(32),
        listen_port=0,
        role="full",
    )


async def garbage(c: MemoryCluster, s: trio.abc.Stream) -> None:
    await s.send_all(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")  # 0xc1 is never valid msgpack


async def huge_length(c: MemoryCluster, s: trio.abc.Stream) -> None:
    await s.send_all(struct.pack(">I", 2**31))


async def wrong_shape(c: MemoryCluster, s: trio.abc.Stream) -> None:
    await s.send_all(codec.frame(codec.pack([1, "not", "a", "hello"])))


async def wrong_chain(c: MemoryCluster, s: trio.abc.Stream) -> None:
    await s.send_all(codec.frame(hello(NodeKey.generate(), b"\x07" * 32).encode()))
    await trio.sleep(1)


async def bad_signature(c: MemoryCluster, s: trio.abc.Stream) -> None:
    key = NodeKey.generate()
    conn = FramedStream(s, 1 << 20)
    await conn.send(hello(key, c.chain_id))
    theirs = await conn.receive()
    assert isinstance(theirs, Hello)
    await conn.receive()  # their HelloAuth
    wrong = NodeKey.generate().sign(handshake_digest(theirs.nonce, key.public, c.chain_id, PROTOCOL_VERSION))
    await conn.send(HelloAuth(signature=wrong))
    reply = await conn.receive()
    assert isinstance(reply, Refuse) and "signature" in reply.reason


async def silent(c: MemoryCluster, s: trio.abc.Stream) -> None:
    await trio.sleep(30)


CASES: dict[str, tuple[Callable[[MemoryCluster, trio.abc.Stream], Awaitable[None]], str, str]] = {
    "garbage bytes": (garbage, "message_rejected", "malformed msgpack"),
    "huge length prefix": (huge_length, "message_rejected", "exceeds maximum"),
    "valid msgpack of the wrong shape": (wrong_shape, "message_rejected", "Hello"),
    "wrong chain id": (wrong_chain, "handshake_refused", "chain id mismatch"),
    "bad handshake signature": (bad_signature, "handshake_refused", "bad handshake signature"),
    "connects and never speaks": (silent, "handshake_refused", "timeout"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_peer_is_refused_and_node_keeps_serving(case: str, autojump_clock: trio.abc.Clock) -> None:
    attack, event, reason = CASES[case]
    with structlog.testing.capture_logs() as logs:
        async with open_memory_cluster(validators=4, accounts=2, seed=1, bootstrap_all=False) as c:
            await c.wait_ready(peers=3)
            host, port = c.node(1).address.rsplit(":", 1)
            stream = await c.network.transport("evil").connect(host, int(port))
            with trio.move_on_after(20):
                try:
                    await attack(c, stream)
                    while await stream.receive_some(4096):
                        pass  # drain until the node closes the connection
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            assert len(c.driver(1).peers) == 3  # its honest peers are untouched
            assert (await c.pay(0, 1, 5, via=1)).settled
            await c.wait_converged(applied=1)
    hits: list[dict[str, Any]] = [
        e
        for e in logs
        if e.get("node") == "node-1" and e["event"] == event and reason in str(e.get("reason"))
    ]
    assert hits, f"no {event} with {reason!r} in node-1's log"
