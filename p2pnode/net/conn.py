"""Framed message streams and the authenticated peer handshake.

Handshake (both sides; the dialer speaks first, the listener learns from the first frame whether
the connection is a peer or a client):

1. each side sends ``Hello{version, chain_id, node_id, nonce (32 fresh random bytes), listen_port, role}``;
2. each side checks the other's Hello: same protocol version, same chain id, a node id that is not
   its own; any mismatch is answered with ``Refuse{reason}`` and the connection closes;
3. each side sends ``HelloAuth{sig}``, an Ed25519 signature over
   ``handshake_digest(other's nonce, own node id, chain id, version)``;
4. each side verifies the other's signature with the node id from its Hello.

Binding the other side's fresh nonce makes a replayed HelloAuth useless; binding the signer's id and
the chain prevents a relay from presenting it elsewhere. All steps run under the caller's deadline.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import trio

from p2pnode.core.payments import handshake_digest
from p2pnode.crypto import NodeKey, ed25519_verify
from p2pnode.errors import DecodeError, HandshakeError, RemoteError
from p2pnode.wire import codec
from p2pnode.wire.messages import Hello, HelloAuth, Message, Refuse, decode
from p2pnode.wire.types import PROTOCOL_VERSION, ChainId, NodeId

# What a remote side can make a stream operation raise: its fault, never the node's.
PEER_ERRORS = (RemoteError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class FramedStream:
    """Messages over a byte stream. Not safe for concurrent senders (callers serialize sends).

    Error handling: ``receive`` raises :class:`DecodeError` / ``FrameTooLarge`` for bad input and
    :class:`RemoteError` at end of stream; transport failures surface as ``trio.BrokenResourceError``.
    """

    def __init__(self, stream: trio.abc.Stream, max_frame: int) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self._decoder = codec.FrameDecoder(max_frame)
        self._ready: list[bytes] = []
        self.bytes_in = 0

    async def send(self, msg: Message) -> None:
        await self.stream.send_all(codec.frame(msg.encode()))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_raw(self) -> bytes:
        while not self._ready:
            data = await self.stream.receive_some(65536)
            if not data:
                raise RemoteError("connection closed by peer")
            self.bytes_in += len(data)
            self._ready.extend(self._decoder.feed(bytes(data)))
        return self._ready.pop(0)

    async def receive(self) -> Message:
        raw = await self.receive_raw()
        return decode(raw, max_len=self.max_frame)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        with trio.move_on_after(1) as scope:
            scope.shield = True
            await self.stream.aclose()


@dataclass(frozen=True, slots=True)
class PeerHello:
    node_id: NodeId
    listen_port: int
    role: str


async def _refuse(conn: FramedStream, reason: str) -> HandshakeError:
    with trio.move_on_after(1):
        try:
            await conn.send(Refuse(reason=reason))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer is gone; the reason is still logged on our side
    return HandshakeError(reason)


async def handshake(
    conn: FramedStream,
    key: NodeKey,
    chain_id: ChainId,
    listen_port: int,
    role: str,
    first: Message | None = None,
) -> PeerHello:
    """Run the handshake; ``first`` is the peer's Hello when the listener already read it.

    Error handling: :class:`HandshakeError` with the reason (already sent to the peer as Refuse);
    :class:`DecodeError` for malformed frames. Callers bound it with ``trio.fail_after``.
    """
    nonce = secrets.token_bytes(32)
    mine = Hello(
        version=PROTOCOL_VERSION,
        chain_id=chain_id,
        node_id=NodeId(key.public),
        nonce=nonce,
        listen_port=listen_port,
        role=role,
    )
    if first is None:
        await conn.send(mine)
        first = await conn.receive()
    else:
        await conn.send(mine)
    if isinstance(first, Refuse):
        raise HandshakeError(f"refused by peer: {first.reason}")
    if not isinstance(first, Hello):
        raise await _refuse(conn, f"expected Hello, got {type(first).__name__}")
    theirs = first
    if theirs.version != PROTOCOL_VERSION:
        raise await _refuse(
            conn, f"protocol version {theirs.version} not supported (want {PROTOCOL_VERSION})"
        )
    if theirs.chain_id != chain_id:
        raise await _refuse(conn, f"chain id mismatch: {theirs.chain_id.hex()[:16]} != {chain_id.hex()[:16]}")
    if theirs.node_id == key.public:
        raise await _refuse(conn, "connected to self")
    if theirs.role not in ("validator", "full"):
        raise await _refuse(conn, f"unknown role {theirs.role!r}")
    await conn.send(
        HelloAuth(signature=key.sign(handshake_digest(theirs.nonce, key.public, chain_id, PROTOCOL_VERSION)))
    )
    auth = await conn.receive()
    if isinstance(auth, Refuse):
        raise HandshakeError(f"refused by peer: {auth.reason}")
    if not isinstance(auth, HelloAuth):
        raise await _refuse(conn, f"expected HelloAuth, got {type(auth).__name__}")
    if not ed25519_verify(
        theirs.node_id, auth.signature, handshake_digest(nonce, theirs.node_id, chain_id, PROTOCOL_VERSION)
    ):
        raise await _refuse(conn, "bad handshake signature")
    return PeerHello(node_id=theirs.node_id, listen_port=theirs.listen_port, role=theirs.role)


__all__ = ["FramedStream", "PeerHello", "handshake", "DecodeError", "PEER_ERRORS"]
