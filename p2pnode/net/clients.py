"""Client requests on the node port: connections whose first frame is not ``Hello``.

One reply per request, in order, on a connection the client may keep open. Submissions wait for the
order's outcome (verified and accepted, or refused with a reason); ``WaitSettled`` waits for the
certificate to be applied here, bounded by the client's ``wait_ms`` (capped at
``limits.request_timeout_s``).

Durable before visible: every answer reads the core's durable view (``NodeCore.visible``), never the
working state. "Settled" is answered only after the certificate's commit returned, and balances,
seqs, notes, roots and counts are those a restart from the disk would show. An answer given at any
instant therefore survives a crash at that instant (tests/integration/test_durability.py takes a
crash image right at the acknowledgement). A payment whose slot is blocked (conflicting orders split
the votes) is answered at once with the reason (``blocked``), never with a timeout.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from p2pnode.config import NodeConfig
from p2pnode.core.effects import Effect, OrderOutcome
from p2pnode.core.node import NodeCore
from p2pnode.core.payments import statement_digest
from p2pnode.errors import DecodeError, RemoteError
from p2pnode.net.conn import PEER_ERRORS, FramedStream, FrameTimeout, IdleTimeout
from p2pnode.wire import codec
from p2pnode.wire.messages import (
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
)
from p2pnode.wire.types import Address, Amount, Digest, Seq

RequestHandler = Callable[[Message], Awaitable[Message]]


class ClientHost(Protocol):
    """What the client-request server needs from the node."""

    @property
    def core(self) -> NodeCore: ...

    @property
    def cfg(self) -> NodeConfig: ...

    @property
    def log(self) -> Any: ...

    @property
    def counters(self) -> dict[str, int]: ...

    def status(self) -> dict[str, Any]: ...

    async def perform(self, effects: list[Effect]) -> None: ...


@dataclass
class _Outcome:
    event: trio.Event = field(default_factory=trio.Event)
    accepted: bool = False
    error: str = ""


class ClientService:
    """Resource handling: each ``serve`` closes its connection when it returns; waiters are plain
    events, dropped when their request ends.

    ``handlers`` adds request types beyond the built-in ones (``{message type: handler}``); a
    request of a type nobody handles is answered with an ``ErrorReply``.
    """

    def __init__(
        self, node: ClientHost, handlers: Mapping[type[Message], RequestHandler] | None = None
    ) -> None:
        self.node = node
        self.handlers: dict[type[Message], RequestHandler] = dict(handlers or {})
        self._outcomes: dict[Digest, list[_Outcome]] = {}
        self._settled: dict[Digest, tuple[trio.Event, list[int]]] = {}  # event, [waiters]
        self._capped_logged_at = -math.inf
        self._capped_unlogged = 0

    def on_outcome(self, e: OrderOutcome) -> None:
        for w in self._outcomes.pop(e.digest, []):
            w.accepted, w.error = e.accepted, e.error
            w.event.set()

    def on_settled(self, digest: Digest) -> None:
        """Wake the waiters of ``digest``: it settled, or its slot became blocked."""
        entry = self._settled.pop(digest, None)
        if entry is not None:
            entry[0].set()

    async def serve(self, conn: FramedStream, first: Message) -> None:
        """Answer ``first`` and every further request on ``conn``; close it when done.

        Bounds (a client's misbehaviour closes its connection, with a ``client_closed`` line): the
        wait for the next request is ``limits.client_idle_s``; a request frame must complete within
        ``limits.frame_timeout_s`` of its first byte (set on ``conn`` by the caller) and a reply must
        be written within the same time (a client that does not read its replies); one request is
        handled at a time, so a client holds at most one frame buffer and one reply.
        """
        limits = self.node.cfg.limits
        msg: Message | None = first
        try:
            while msg is not None:
                reply = await self._request(msg)
                with trio.fail_after(limits.frame_timeout_s):
                    await conn.send(reply)
                try:
                    msg = await conn.receive(idle_s=limits.client_idle_s)
                except (DecodeError, FrameTimeout, IdleTimeout):
                    raise
                except RemoteError:
                    msg = None  # the client closed the connection
        except DecodeError as exc:
            self.node.counters["frames_rejected"] += 1
            self.node.log.warning("message_rejected", kind="client", reason=str(exc), peer="client")
            with trio.move_on_after(1):
                try:
                    await conn.send(ErrorReply(reason=f"malformed request: {exc}"[:512]))
                except PEER_ERRORS:
                    pass  # it is gone already; the reason is in our log
        except (FrameTimeout, IdleTimeout) as exc:
            self.node.log.info("client_closed", reason=str(exc), peer="client")
        except trio.TooSlowError:
            self.node.log.info(
                "client_closed", reason=f"reply not taken within {limits.frame_timeout_s:g}s", peer="client"
            )
        except PEER_ERRORS:
            pass  # the client went away; nothing it asked for is lost
        finally:
            await conn.aclose()

    async def _request(self, msg: Message) -> Message:
        if isinstance(msg, StatusRequest):
            reply = StatusReply(info=self.node.status())
            need = (len(codec.frame(reply.encode())) + 1) // 2
            if len(codec.frame(msg.encode())) < need:
                return ErrorReply(reason=f"pad {need}")  # short: at most 2 bytes out per byte in, also here
            return reply
        if isinstance(msg, GetAccount):
            core = self.node.core
            balance, next_seq = core.visible.account(msg.address) or (0, 0)
            return AccountReply(
                address=Address(msg.address),
                balance=Amount(balance),
                next_seq=Seq(next_seq),
                blocked=core.blocked_account(msg.address)[:512],
            )
        if isinstance(msg, (SubmitOrder, SubmitShielded)):
            return await self._submit(msg.order)
        if isinstance(msg, GetNotes):
            return self._notes(msg)
        if isinstance(msg, WaitSettled):
            return await self._wait_settled(msg)
        handler = self.handlers.get(type(msg))
        if handler is not None:
            return await handler(msg)
        return ErrorReply(reason=f"{type(msg).__name__} is not a client request")

    async def _submit(self, order: Order | ShieldedOrder) -> Message:
        digest = statement_digest(order)
        waiter = _Outcome()
        self._outcomes.setdefault(digest, []).append(waiter)
        await self.node.perform(
            self.node.core.on_submit(trio.current_time(), order, trio.lowlevel.current_task())
        )
        with trio.move_on_after(self.node.cfg.limits.request_timeout_s):
            await waiter.event.wait()
        if not waiter.event.is_set():
            return SubmitReply(digest=digest, accepted=False, error="timed out waiting for verification")
        return SubmitReply(digest=digest, accepted=waiter.accepted, error=waiter.error)

    def _notes(self, msg: GetNotes) -> Message:
        """Outputs of applied shielded certificates (what wallets scan for their memos)."""
        core = self.node.core
        outputs = core.outputs
        end = min(core.visible.outputs, msg.start + min(msg.limit, 4096))
        notes = core.visible.notes
        page = tuple((c, memo, bool(notes.get(c))) for c, memo in outputs[msg.start : end])
        return NotesReply(notes=page, next=max(end, msg.start), total=core.visible.outputs)

    def _wait_capped(self, wait_ms: int, cap: float) -> None:
        """Log that a client asked to wait longer than ``limits.request_timeout_s`` (at most once a
        second, with the count of the unlogged ones: a flood of such waits must not flood the log)."""
        self.node.counters["requests_capped"] += 1
        now = trio.current_time()
        if now - self._capped_logged_at < 1.0:
            self._capped_unlogged += 1
            return
        self.node.log.info(
            "request_capped",
            peer="client",
            kind="WaitSettled",
            reason=f"wait_ms {wait_ms} capped at limits.request_timeout_s ({cap:g}s)",
            unlogged=self._capped_unlogged,
        )
        self._capped_logged_at, self._capped_unlogged = now, 0

    async def _wait_settled(self, msg: WaitSettled) -> Message:
        digest = Digest(msg.digest)
        core = self.node.core
        if digest not in core.visible.settled and not core.blocked_for(digest):
            cap = self.node.cfg.limits.request_timeout_s
            if msg.wait_ms / 1000 > cap:
                self._wait_capped(msg.wait_ms, cap)
            entry = self._settled.setdefault(digest, (trio.Event(), [0]))
            entry[1][0] += 1
            try:
                with trio.move_on_after(min(msg.wait_ms / 1000, cap)):
                    await entry[0].wait()
            finally:
                entry[1][0] -= 1
                if entry[1][0] == 0 and self._settled.get(digest) is entry:
                    del self._settled[digest]  # no waiter left: free it (a finished wait holds nothing)
        settled = digest in core.visible.settled
        return SettledReply(
            digest=digest,
            settled=settled,
            root=core.visible.root,
            applied=core.visible.applied,
            blocked="" if settled else core.blocked_for(digest)[:512],
        )
