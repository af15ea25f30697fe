"""Client side of the node port: one request, one reply, over a plain (non-peer) connection.

A client connection never sends ``Hello``; its first frame is a request. The node answers every
request with exactly one reply frame, in order, and keeps the connection open for more.
"""

from __future__ import annotations

from types import TracebackType

import trio

from p2pnode.errors import DecodeError, RemoteError
from p2pnode.wire import codec
from p2pnode.wire.messages import ErrorReply, Message, decode


class Client:
    """A connection to one node for sequential requests.

    Resource handling: use as an async context manager; the stream is closed on exit.
    Error handling: ``OSError`` if the node cannot be reached; :class:`RemoteError` if the node sends
    something undecodable or an ``ErrorReply``; callers bound waits with ``trio.fail_after``.
    """

    def __init__(self, stream: trio.abc.Stream, max_frame: int = codec.DEFAULT_MAX_FRAME) -> None:
        self._stream = stream
        self._decoder = codec.FrameDecoder(max_frame)
        self._frames: list[bytes] = []
        self._lock = trio.Lock()

    @classmethod
    async def connect(cls, host: str, port: int) -> Client:
        stream = await trio.open_tcp_stream(host, port)
        return cls(stream)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def call(self, request: Message) -> Message:
        """Send ``request`` and return the node's reply (``ErrorReply`` raises RemoteError)."""
        async with self._lock:
            await self._stream.send_all(codec.frame(request.encode()))
            while not self._frames:
                data = await self._stream.receive_some(65536)
                if not data:
                    raise RemoteError("node closed the connection")
                self._frames.extend(self._decoder.feed(bytes(data)))
            raw = self._frames.pop(0)
        try:
            reply = decode(raw)
        except DecodeError as exc:
            raise RemoteError(f"bad reply: {exc}") from None
        if isinstance(reply, ErrorReply):
            raise RemoteError(reply.reason)
        return reply  # type: ignore[no-any-return]


async def request(host: str, port: int, msg: Message) -> Message:
    """One request on a fresh connection."""
    async with await Client.connect(host, port) as client:
        return await client.call(msg)
