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

import math
import secrets
from collections import deque
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


class FrameTimeout(RemoteError):
    """A frame whose first byte arrived was not complete within the stream's ``frame_timeout``."""

    def __init__(self, timeout: float, buffered: int) -> None:
        super().__init__(f"frame not completed within {timeout:g}s ({buffered} bytes of it received)")
        self.timeout = timeout
        self.buffered = buffered


class IdleTimeout(RemoteError):
    """No frame started within the idle time the caller allowed between frames."""

    def __init__(self, idle_s: float) -> None:
        super().__init__(f"idle: no request within {idle_s:g}s")
        self.idle_s = idle_s


class FramedStream:
    """Messages over a byte stream. Not safe for concurrent senders (callers serialize sends).

    Bounds: at most one frame is buffered (``max_frame`` bytes of body, plus the rest of one read of
    ``READ_SIZE``), and, when ``frame_timeout`` is set, a frame that has started arriving must be
    complete after that many seconds of waiting for its bytes (``limits.frame_timeout_s``): a peer or
    client cannot hold a buffer open by sending a frame slowly or only half of it. Only time spent
    waiting counts, not time the caller spent handling earlier frames before reading again: a node
    whose loop is busy finds the rest of the frame already buffered and must not take the sender for
    a slow one (a committee link was cut with 47 KB of a frame received while its reader was stopped by
    a profiler, not by its peer). The wait *between* frames is the caller's to bound.

    Error handling: ``receive`` raises :class:`DecodeError` / ``FrameTooLarge`` for bad input,
    :class:`FrameTimeout` for a frame sent too slowly and :class:`RemoteError` at end of stream;
    transport failures surface as ``trio.BrokenResourceError``.
    """

    READ_SIZE = 65536

    def __init__(
        self, stream: trio.abc.Stream, max_frame: int, *, frame_timeout: float | None = None
    ) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self._decoder = codec.FrameDecoder(max_frame)
        self._ready: deque[bytes] = deque()
        self._partial = 0  # bytes received of the frame not yet complete (header included)
        self._frame_waited = 0.0  # seconds spent waiting for the rest of the frame not yet complete
        self.bytes_in = 0
        self._idle_since: float | None = None

    def limit(self, max_frame: int) -> None:
        """Change the largest frame accepted from now on (e.g. raised once a peer is authenticated)."""
        self.max_frame = max_frame
        self._decoder.limit(max_frame)

    @property
    def idle_since(self) -> float | None:
        """Trio time since which this stream has been waiting for a frame to begin with nothing
        buffered (between requests), or None while a frame is arriving or being handled."""
        return self._idle_since

    @property
    def partial(self) -> int:
        """Bytes of an incomplete frame held (0 between frames)."""
        return self._partial

    async def send(self, msg: Message) -> None:
        await self.stream.send_all(codec.frame(msg.encode()))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_raw(self, *, idle_s: float | None = None) -> bytes:
        """The next frame's body. ``idle_s`` bounds the wait for the frame's first byte only (once it
        started, ``frame_timeout`` takes over): it is a property of the protocol spoken on the stream
        (a client's idle allowance), not a caller's deadline, which callers set with ``fail_after``."""
        idle_until = trio.current_time() + idle_s if idle_s is not None else math.inf
        if self._ready:
            # One read can bring many frames. Handing them out without a checkpoint would let one
            # connection that sends fast (a flood) run its frames back to back while every other
            # task waits; yielding per frame takes turns with the other connections, frame by frame.
            await trio.lowlevel.checkpoint()
        if not self._ready and not self._partial:
            self._idle_since = trio.current_time()
        while not self._ready:
            data: bytes | bytearray = b""
            if self._partial and self.frame_timeout is not None:
                began = trio.current_time()
                try:
                    with trio.move_on_after(max(0.0, self.frame_timeout - self._frame_waited)) as scope:
                        data = await self.stream.receive_some(self.READ_SIZE)
                finally:  # a wait the caller cancelled was waited all the same
                    self._frame_waited += trio.current_time() - began
                if scope.cancelled_caught:
                    raise FrameTimeout(self.frame_timeout, self._partial)
            elif not self._partial and idle_s is not None:
                with trio.move_on_at(idle_until) as scope:
                    data = await self.stream.receive_some(self.READ_SIZE)
                if scope.cancelled_caught:
                    raise IdleTimeout(idle_s)
            else:
                data = await self.stream.receive_some(self.READ_SIZE)
            self._idle_since = None
            if not data:
                raise RemoteError("connection closed by peer")
            self._take(bytes(data))
        self._idle_since = None
        return self._ready.popleft()

    def _take(self, data: bytes) -> None:
        self.bytes_in += len(data)
        frames = self._decoder.feed(data)
        started = self._partial == 0
        self._partial += len(data) - sum(codec.HEADER.size + len(f) for f in frames)
        if self._partial and (started or frames):
            self._frame_waited = 0.0  # a new frame began within this read
        self._ready.extend(frames)

    async def receive(self, *, idle_s: float | None = None) -> Message:
        raw = await self.receive_raw(idle_s=idle_s)
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


__all__ = [
    "FrameTimeout",
    "FramedStream",
    "IdleTimeout",
    "PeerHello",
    "handshake",
    "DecodeError",
    "PEER_ERRORS",
]
