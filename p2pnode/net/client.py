"""Client side of the node port: one request, one reply, over a plain (non-peer) connection.

A client connection never sends ``Hello``; its first frame is a request. The node answers every
request with exactly one reply frame, in order, and keeps the connection open for more.
"""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

import trio

from p2pnode.errors import DecodeError, RemoteError
from p2pnode.wire import codec
from p2pnode.wire.messages import ErrorReply, Message, decode

R = TypeVar("R", bound=Message)


class ConnectionLost(RemoteError):
    """The connection to the node broke (reset, closed) before its reply arrived."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"connection to {node} lost: {reason}")
        self.node = node
        self.reason = reason


class UnexpectedReply(RemoteError):
    """The node answered a request with a message of the wrong type."""

    def __init__(self, node: str, request: Message, reply: Message) -> None:
        super().__init__(f"{node}: node answered {type(reply).__name__} to {type(request).__name__}")
        self.node = node
        self.reply = reply


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    for e in (exc, cause):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    text = str(cause or exc) if cause is not None else str(exc)
    return text or type(exc).__name__


class Client:
    """A connection to one node for sequential requests.

    Resource handling: use as an async context manager; the stream is closed on exit.
    Error handling: ``OSError`` if the node cannot be reached; :class:`ConnectionLost` if the
    connection breaks during a request; :class:`RemoteError` if the node sends something
    undecodable or an ``ErrorReply`` (:class:`UnexpectedReply` from :meth:`call_expect` for a reply
    of the wrong type). Callers bound waits with ``trio.fail_after``.
    """

    def __init__(
        self, stream: trio.abc.Stream, max_frame: int = codec.DEFAULT_MAX_FRAME, name: str = "node"
    ) -> None:
        self._stream = stream
        self._decoder = codec.FrameDecoder(max_frame)
        self._frames: list[bytes] = []
        self._lock = trio.Lock()
        self.name = name

    @classmethod
    async def connect(cls, host: str, port: int) -> Client:
        stream = await trio.open_tcp_stream(host, port)
        return cls(stream, name=f"{host}:{port}")

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except (trio.BrokenResourceError, OSError):
            pass  # closing a connection the node reset already: nothing is left to release

    async def call(self, request: Message) -> Message:
        """Send ``request`` and return the node's reply (``ErrorReply`` raises RemoteError)."""
        async with self._lock:
            try:
                await self._stream.send_all(codec.frame(request.encode()))
                while not self._frames:
                    data = await self._stream.receive_some(65536)
                    if not data:
                        raise ConnectionLost(self.name, "the node closed the connection")
                    self._frames.extend(self._decoder.feed(bytes(data)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionLost(self.name, _reason(exc)) from exc
            raw = self._frames.pop(0)
        try:
            reply = decode(raw)
        except DecodeError as exc:
            raise RemoteError(f"{self.name}: bad reply: {exc}") from None
        if isinstance(reply, ErrorReply):
            raise RemoteError(reply.reason)
        return reply  # type: ignore[no-any-return]

    async def call_expect(self, request: Message, reply_type: type[R]) -> R:
        """:meth:`call`, and the reply must be a ``reply_type`` (else :class:`UnexpectedReply`)."""
        reply = await self.call(request)
        if not isinstance(reply, reply_type):
            raise UnexpectedReply(self.name, request, reply)
        return reply


async def request(host: str, port: int, msg: Message) -> Message:
    """One request on a fresh connection."""
    async with await Client.connect(host, port) as client:
        return await client.call(msg)


async def request_expect(host: str, port: int, msg: Message, reply_type: type[R]) -> R:
    """One typed request on a fresh connection (see :meth:`Client.call_expect`)."""
    async with await Client.connect(host, port) as client:
        return await client.call_expect(msg, reply_type)
