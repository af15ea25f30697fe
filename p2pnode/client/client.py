"""The client side of the node port: typed requests over a plain (non-peer) connection.

A client connection never sends ``Hello``; its first frame is a request. The node answers every
request with exactly one reply frame, in order, and keeps the connection open for more.

:meth:`Client.wait_settled` (over :func:`wait_settled`) is the one wait-until-settled loop of the
code base: the CLI, the tools, the scenario runner and the tests all wait through it.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from p2pnode.client.errors import (
    ConnectionLost,
    NodeTimeout,
    NotSettled,
    PaymentRefused,
    Refused,
    SlotBlocked,
    UnexpectedReply,
)
from p2pnode.client.progress import CONNECT, REPLY, SETTLE, Progress
from p2pnode.client.status import AccountState, NodeStatus, Settlement, describe_blocked
from p2pnode.config import parse_hostport
from p2pnode.errors import DecodeError, P2PNodeError, RemoteError
from p2pnode.wire import codec
from p2pnode.wire.messages import (
    SHIELD,
    AccountReply,
    ErrorReply,
    GetAccount,
    GetNotes,
    Message,
    NotesReply,
    Order,
    SettledReply,
    ShieldedOrder,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    SubmitReply,
    SubmitShielded,
    WaitSettled,
    decode,
)
from p2pnode.wire.types import Address, Digest

if TYPE_CHECKING:
    from p2pnode.net.transport import Transport

__all__ = [
    "Client",
    "Requester",
    "fetch_status",
    "open_client",
    "query_status",
    "request",
    "request_expect",
    "slot_blocked",
    "wait_settled",
]

R = TypeVar("R", bound=Message)

# One WaitSettled asks the node to hold its reply this long at most; the loop asks again until the
# payment settles or the caller's deadline cancels it.
WAIT_SLICE_MS = 1000
_NOTES_PAGE = 4096


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    for e in (exc, cause):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    text = str(cause or exc) if cause is not None else str(exc)
    return text or type(exc).__name__


_REPLY_NAMES = {
    "StatusRequest": "status reply",
    "GetAccount": "account reply",
    "SubmitOrder": "reply to the order",
    "SubmitShielded": "reply to the order",
    "WaitSettled": "settled reply",
    "GetNotes": "notes reply",
}


def _reply_name(request: Message) -> str:
    name = type(request).__name__
    return _REPLY_NAMES.get(name, f"reply to {name}")


class Requester(Protocol):
    """What :func:`wait_settled` needs of a connection (a :class:`Client` is one)."""

    async def call(self, request: Message) -> Message: ...


STATUS_PAD = 1536  # a status reply of a small cluster's node is ~1.2 KB: one round trip as a rule
_PAD_TO = "pad "


async def status_reply(conn: Requester) -> StatusReply:
    """Ask ``conn`` for its status with a padded ``StatusRequest`` (the node answers at most 2 bytes
    per byte it received); padded more and asked again if the node says the reply needs it."""
    pad = STATUS_PAD
    for _ in range(3):
        try:
            reply = await conn.call(StatusRequest(pad=bytes(pad)))
        except RemoteError as exc:
            reason = str(exc)
            if not reason.startswith(_PAD_TO) or not reason[len(_PAD_TO) :].isdigit():
                raise
            pad = int(reason[len(_PAD_TO) :]) + 512  # the reply may grow a little meanwhile
            continue
        if not isinstance(reply, StatusReply):
            raise UnexpectedReply(getattr(conn, "name", "node"), StatusRequest(), reply)
        return reply
    raise RemoteError(f"status reply larger than {pad * 2} bytes")


class Client:
    """A connection to one node for sequential requests.

    Resource handling: use as an async context manager; the stream is closed on exit. A request
    cancelled while its reply is outstanding (a caller's deadline) leaves the connection usable: the
    late reply is read and dropped before the next request's.

    Error handling: ``OSError`` if the node cannot be reached; :class:`ConnectionLost` if the
    connection breaks during a request; :class:`RemoteError` if the node sends something
    undecodable or an ``ErrorReply`` (:class:`UnexpectedReply` for a reply of the wrong type).
    No method takes a timeout: callers bound waits with ``trio.fail_after`` and may read
    :attr:`progress` to learn which step the deadline cut short.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        name: str = "node",
        max_frame: int = codec.DEFAULT_MAX_FRAME,
        progress: Progress | None = None,
    ) -> None:
        self._stream = stream
        self._decoder = codec.FrameDecoder(max_frame)
        self._frames: list[bytes] = []
        self._unanswered = 0  # replies to requests whose caller was cancelled, still to be dropped
        self._torn = False  # a send was interrupted part way: the stream's framing is lost
        self._lock = trio.Lock()
        self._chain_id: bytes | None = None
        self.name = name
        self.progress = progress if progress is not None else Progress()

    @classmethod
    async def connect(
        cls, host: str, port: int, *, transport: Transport | None = None, progress: Progress | None = None
    ) -> Client:
        """Open a connection (TCP, or over ``transport``). Raises ``OSError`` if nothing answers."""
        name = f"{host}:{port}"
        progress = progress if progress is not None else Progress()
        with progress.step(CONNECT, f"connection to {name}", node=name):
            if transport is None:
                stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            else:
                stream = await transport.connect(host, port)
        return cls(stream, name=name, progress=progress)

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

    # -- raw requests -------------------------------------------------------------------------------
    async def _next_frame(self) -> bytes:
        while not self._frames:
            data = await self._stream.receive_some(65536)
            if not data:
                raise ConnectionLost(self.name, "the node closed the connection")
            self._frames.extend(self._decoder.feed(bytes(data)))
        return self._frames.pop(0)

    async def call(self, request: Message) -> Message:
        """Send ``request`` and return the node's reply (an ``ErrorReply`` raises RemoteError)."""
        with self.progress.step(REPLY, f"{_reply_name(request)} from {self.name}", node=self.name):
            async with self._lock:
                if self._torn:
                    raise ConnectionLost(self.name, "an earlier request was interrupted while being sent")
                try:
                    while self._unanswered:
                        await self._next_frame()
                        self._unanswered -= 1
                    self._torn = True
                    await self._stream.send_all(codec.frame(request.encode()))
                    self._torn = False
                    self._unanswered += 1
                    raw = await self._next_frame()
                    self._unanswered -= 1
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionLost(self.name, _reason(exc)) from exc
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

    # -- typed requests -----------------------------------------------------------------------------
    async def status(self) -> NodeStatus:
        """The node's status (missing keys take their defaults, see :meth:`NodeStatus.from_info`)."""
        reply = await status_reply(self)
        return NodeStatus.from_info(reply.info)

    async def chain_id(self) -> bytes:
        """The chain the node is on (asked once per connection). P2PNodeError if it names none."""
        if self._chain_id is None:
            status = await self.status()
            try:
                chain_id = bytes.fromhex(status.chain_id)
            except ValueError:
                chain_id = b""
            if len(chain_id) != 32:
                raise P2PNodeError(f"{self.name}: its status names no chain id")
            self._chain_id = chain_id
        return self._chain_id

    async def account(self, address: bytes) -> AccountState:
        """One account as the node holds it durably (an unknown account: balance 0, next seq 0)."""
        reply = await self.call_expect(GetAccount(address=Address(address)), AccountReply)
        return AccountState(
            address=bytes(reply.address),
            balance=reply.balance,
            next_seq=reply.next_seq,
            blocked=reply.blocked,
        )

    async def submit(self, order: Order | ShieldedOrder) -> bytes:
        """Submit an order; returns its digest once the node accepted it.

        Raises :class:`PaymentRefused` with the node's one-line reason, or :class:`SlotBlocked` when
        the order's slot is blocked (naming the conflicting orders the node reports)."""
        request: Message = (
            SubmitOrder(order=order) if isinstance(order, Order) else SubmitShielded(order=order)
        )
        reply = await self.call_expect(request, SubmitReply)
        if reply.accepted:
            return bytes(reply.digest)
        slot = _slot_of(order)
        if reply.error.startswith("blocked") and slot is not None:
            raise await slot_blocked(self, slot[0], slot[1], reply.error, tx=bytes(reply.digest))
        raise PaymentRefused(reply.error)

    async def settled(self, digest: bytes) -> Settlement | None:
        """The settlement of ``digest`` if the node has applied it (durably), else None; no waiting.
        Raises :class:`SlotBlocked` if it can never settle."""
        reply = await self.call_expect(WaitSettled(digest=Digest(digest), wait_ms=0), SettledReply)
        if reply.blocked:
            raise await _blocked_tx(self, digest, reply.blocked)
        return Settlement(digest, reply.root, reply.applied) if reply.settled else None

    async def wait_settled(self, digest: bytes) -> Settlement:
        """Wait until the node has applied ``digest`` durably; see :func:`wait_settled`."""
        return await wait_settled(self, digest, name=self.name, progress=self.progress)

    async def outputs(self, start: int = 0) -> list[tuple[bytes, bytes, bool]]:
        """Every (commitment, memo, spent) the node has applied from index ``start``, in its order."""
        out: list[tuple[bytes, bytes, bool]] = []
        while True:
            reply = await self.call_expect(GetNotes(start=start, limit=_NOTES_PAGE), NotesReply)
            out.extend(reply.notes)
            if reply.next >= reply.total or not reply.notes:
                return out
            start = reply.next


async def wait_settled(
    conn: Requester, digest: bytes, *, name: str = "node", progress: Progress | None = None
) -> Settlement:
    """Wait until the node behind ``conn`` has applied ``digest`` durably, and return the settlement.

    There is no timeout argument: the wait ends when the caller's cancel scope does (``fail_after``),
    and ``progress`` then names the tx. Raises :class:`SlotBlocked` as soon as the node says the
    payment can never settle (its slot is blocked by conflicting orders), :class:`NotSettled` if the
    node dropped the order after holding it too long (``limits.held_order_s``); :class:`UnexpectedReply` for
    a reply that is not a ``SettledReply``. The node holds each request up to ``WAIT_SLICE_MS``.
    """
    progress = progress if progress is not None else Progress()
    with progress.step(SETTLE, f"settlement of tx {digest.hex()} at {name}", node=name, tx=digest.hex()):
        while True:
            request = WaitSettled(digest=Digest(digest), wait_ms=WAIT_SLICE_MS)
            reply = await conn.call(request)
            if not isinstance(reply, SettledReply):
                raise UnexpectedReply(name, request, reply)
            if reply.blocked:
                raise await _blocked_tx(conn, digest, reply.blocked)
            if reply.settled:
                return Settlement(digest, reply.root, reply.applied)


def _slot_of(order: Order | ShieldedOrder) -> tuple[bytes, int] | None:
    """The (account, seq) an order consumes, if it consumes one."""
    if isinstance(order, Order):
        return order.transfer.sender, order.transfer.seq
    if order.tx.kind == SHIELD:
        return order.tx.account, order.tx.seq
    return None


async def _status_of(conn: Requester) -> NodeStatus | None:
    try:
        reply = await status_reply(conn)
    except P2PNodeError:
        return None  # the reason alone still says what is wrong
    return NodeStatus.from_info(reply.info)


async def slot_blocked(
    conn: Requester, sender: bytes, seq: int, reason: str, *, tx: bytes | None = None
) -> SlotBlocked:
    """A SlotBlocked for slot (sender, seq), naming the conflicting orders the node reports (just
    ``reason`` if it reports none)."""
    status = await _status_of(conn)
    slot = status.blocked_slot(sender, seq) if status is not None else None
    orders = {d: list(v) for d, v in slot.voters.items()} if slot is not None else {}
    facts = {"account": sender.hex(), "seq": seq, "blocked": reason, "orders": orders}
    if tx is not None:
        facts["tx"] = tx.hex()
    return SlotBlocked(describe_blocked(sender, seq, reason, orders), **facts)


async def _blocked_tx(conn: Requester, digest: bytes, reason: str) -> Refused:
    if reason.startswith("expired:"):
        # The node stopped holding an order it could not vote on yet; other nodes may still settle
        # it, so this is "not settled here", never "can never settle".
        return NotSettled(
            f"tx {digest.hex()} was accepted but has not settled: the node dropped it ({reason}); "
            "it may still settle, and the wallet submits the same order again next time",
            tx=digest.hex(),
            expired=reason,
        )
    status = await _status_of(conn)
    slot = status.blocked_with(digest) if status is not None else None
    if slot is None:
        return SlotBlocked(f"tx {digest.hex()} can never settle: {reason}", tx=digest.hex(), blocked=reason)
    try:
        sender = bytes.fromhex(slot.sender)
    except ValueError:
        sender = b""
    orders = {d: list(v) for d, v in slot.voters.items()}
    return SlotBlocked(
        describe_blocked(sender, slot.seq, reason, orders),
        account=slot.sender,
        seq=slot.seq,
        blocked=reason,
        orders=orders,
        tx=digest.hex(),
    )


async def open_client(address: str | tuple[str, int], *, progress: Progress | None = None) -> Client:
    """Connect to ``"host:port"`` (or a (host, port) pair). ConfigError names a malformed address;
    OSError if nothing answers."""
    if isinstance(address, str):
        host, port = parse_hostport(address, key="node address")
    else:
        host, port = address
    return await Client.connect(host, port, progress=progress)


async def request(host: str, port: int, msg: Message) -> Message:
    """One request on a fresh connection."""
    async with await Client.connect(host, port) as client:
        return await client.call(msg)


async def request_expect(host: str, port: int, msg: Message, reply_type: type[R]) -> R:
    """One typed request on a fresh connection (see :meth:`Client.call_expect`)."""
    async with await Client.connect(host, port) as client:
        return await client.call_expect(msg, reply_type)


async def query_status(host: str, port: int) -> dict[str, Any]:
    """The raw status map of one node, on a fresh connection (prefer :meth:`Client.status`, typed).

    Error handling: ``OSError`` if the node cannot be reached, :class:`RemoteError` if it answers with
    anything but a ``StatusReply``. The caller bounds the wait (``trio.fail_after``)."""
    async with await Client.connect(host, port) as client:
        reply = await status_reply(client)
    return dict(reply.info)


def fetch_status(host: str, port: int, timeout: float = 10.0) -> NodeStatus:
    """Synchronous status of one node (runs its own ``trio.run``) for scripts and tests;
    :class:`NodeTimeout` if it does not answer within ``timeout`` seconds."""

    async def _run() -> NodeStatus:
        with trio.fail_after(timeout):
            async with await Client.connect(host, port) as client:
                return await client.status()

    try:
        return trio.run(_run)
    except trio.TooSlowError:
        raise NodeTimeout(f"{host}:{port}: no status reply within {timeout:g}s") from None
