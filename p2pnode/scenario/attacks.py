"""Client-port attacks (``action = "attack"``), run by the runner process against a victim's port.

Every attack is bounded: at most ``count`` connections (or concurrent requests), and it stops by itself
after ``duration_s``; every connection it opened is closed when it ends, also when the run is cancelled.
It records what the victim did to it: how many connections it cut and when (seconds after the attack
began), and the reasons of any ``ErrorReply`` it sent. That, with the victim's own ``client_closed`` /
``client_cut`` / ``connection_refused`` / ``handshake_refused`` log lines, is the evidence that the
attacker was refused (``expect.attacker_penalized``).

Kinds (what the node is expected to do is in ``docs/dos.md``, "Client connections are first-class"):

``idle_clients``  open ``count`` connections; the even-numbered ones send nothing at all, the odd ones
                  one ``GetAccount`` and then nothing. Expected: the silent ones are closed after
                  ``peers.handshake_timeout_s``, the others after ``limits.client_idle_s``, and those
                  beyond ``limits.max_clients`` are refused at once.
``slowloris``     ``count`` connections, each sends one good request, then a second request one byte
                  every ``SLOW_BYTE_S`` (the frame is never complete in time). Expected: cut
                  ``limits.frame_timeout_s`` after the first byte of the slow frame.
``half_frames``   ``count`` connections, each sends one good request, then a length prefix for a frame
                  of 1 MiB (``limits.max_frame`` less a little) and half of its body, then stalls.
                  Expected: cut after ``limits.frame_timeout_s``; the victim holds the halves meanwhile.
``long_waits``    ``count`` connections, each ``WaitSettled`` for an unknown digest with
                  ``wait_ms = 2**32 - 1``; beside them, ``FINISHED_WAIT_CONNS`` connections asking
                  ``WaitSettled`` with ``wait_ms = 0`` for fresh unknown digests one after another (at
                  most ``MAX_FINISHED_WAITS``). Expected: each long wait is answered (settled = false)
                  after ``limits.request_timeout_s`` at most; finished waits leave nothing behind (memory).
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass, field
from typing import Any

import trio

from p2pnode.errors import P2PNodeError
from p2pnode.wire import codec
from p2pnode.wire.messages import (
    ErrorReply,
    GetAccount,
    Message,
    SettledReply,
    WaitSettled,
    decode,
)
from p2pnode.wire.types import Address, Digest

__all__ = ["AttackRecord", "run_attack"]

SLOW_BYTE_S = 1.0  # slowloris: one byte of the slow frame per this many seconds
HALF_FRAME_BYTES = 1024 * 1024 - 64  # the frame a half_frames connection announces (within max_frame)
FINISHED_WAIT_CONNS = 2
MAX_FINISHED_WAITS = 200_000
OPEN_SPACING_S = 0.002  # between two connection attempts (the victim's listen backlog is finite)
FIRST_REPLY_TIMEOUT_S = 5.0
LONG_WAIT_MS = 2**32 - 1


@dataclass
class AttackRecord:
    """What one attack step did and what the victim did to it (times in seconds after its start)."""

    node: str
    kind: str
    count: int
    duration_s: float
    started_s: float = 0.0  # run time the attack began
    started_ns: int = 0  # wall clock the attack began (compared with the victim's log)
    ended_s: float = 0.0
    opened: int = 0  # connections established
    connect_failed: int = 0
    cut: int = 0  # connections the victim closed (EOF or reset) while the attack held them
    cut_s: list[float] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)  # ErrorReply reason -> count
    open_at_end: int = 0  # still open when the attack stopped (closed by the attacker)
    bytes_out: int = 0
    bytes_in: int = 0
    long_waits_answered: int = 0
    long_wait_max_s: float = 0.0  # longest a long wait stayed open before its answer
    finished_waits: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        cuts = sorted(self.cut_s)
        return {
            "node": self.node,
            "kind": self.kind,
            "count": self.count,
            "duration_s": self.duration_s,
            "started_s": round(self.started_s, 3),
            "started_ns": self.started_ns,
            "ended_s": round(self.ended_s, 3),
            "opened": self.opened,
            "connect_failed": self.connect_failed,
            "cut": self.cut,
            "first_cut_s": round(cuts[0], 3) if cuts else None,
            "median_cut_s": round(cuts[len(cuts) // 2], 3) if cuts else None,
            "last_cut_s": round(cuts[-1], 3) if cuts else None,
            "refusals": self.refusals,
            "open_at_end": self.open_at_end,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "long_waits_answered": self.long_waits_answered,
            "long_wait_max_s": round(self.long_wait_max_s, 3),
            "finished_waits": self.finished_waits,
            "errors": self.errors,
        }

    def summary(self) -> str:
        j = self.to_json()
        text = (
            f"{self.kind} on {self.node}: {self.opened} opened, {self.cut} cut by the victim"
            + (f" (first {j['first_cut_s']}s, median {j['median_cut_s']}s)" if self.cut else "")
            + f", {self.open_at_end} still open at the end"
        )
        if self.refusals:
            text += "; refused: " + ", ".join(f"{n}x {r[:60]}" for r, n in self.refusals.items())
        if self.kind == "long_waits":
            text += (
                f"; {self.long_waits_answered} long waits answered (longest {self.long_wait_max_s:.1f}s), "
                f"{self.finished_waits} finished waits"
            )
        return text


class _Conn:
    """One raw connection: a reader task turns what the victim sends into messages and notes the cut."""

    def __init__(self, stream: trio.SocketStream, rec: AttackRecord, t0: float) -> None:
        self.stream = stream
        self.rec = rec
        self.t0 = t0
        self.decoder = codec.FrameDecoder(codec.DEFAULT_MAX_FRAME)
        self.send_replies, self.replies = trio.open_memory_channel[Message](math.inf)
        self.closed = trio.Event()
        self.cut = False  # the victim closed the connection

    async def reader(self) -> None:
        try:
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, OSError):
                    data = b""  # reset by the victim
                if not data:
                    self.cut = True
                    self.rec.cut += 1
                    self.rec.cut_s.append(trio.current_time() - self.t0)
                    return
                self.rec.bytes_in += len(data)
                for body in self.decoder.feed(data):
                    try:
                        msg = decode(body)
                    except P2PNodeError:
                        continue
                    if isinstance(msg, ErrorReply):
                        self.rec.refusals[msg.reason] = self.rec.refusals.get(msg.reason, 0) + 1
                    self.send_replies.send_nowait(msg)
        except trio.ClosedResourceError:
            pass  # closed by the attacker itself
        finally:
            self.closed.set()
            self.send_replies.close()

    async def send(self, data: bytes) -> bool:
        """Send ``data``; False when the victim has closed the connection."""
        if self.closed.is_set():
            return False
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        self.rec.bytes_out += len(data)
        return True

    async def reply(self) -> Message | None:
        """The next message from the victim, or None if it closed the connection or took too long."""
        with trio.move_on_after(FIRST_REPLY_TIMEOUT_S):
            try:
                return await self.replies.receive()
            except trio.EndOfChannel:
                return None
        return None


def _frame(msg: Message) -> bytes:
    return codec.frame(msg.encode())


def _good_request() -> bytes:
    """The one well-formed request a connection makes first (a cheap one: an account look-up)."""
    return _frame(GetAccount(address=Address(os.urandom(20))))


def _note(rec: AttackRecord, exc: BaseException) -> None:
    key = f"{type(exc).__name__}: {exc}"[:120]
    rec.errors[key] = rec.errors.get(key, 0) + 1


async def _behave(conn: _Conn, kind: str, i: int) -> None:
    """What connection ``i`` of an attack of ``kind`` does; returns when it has nothing more to do."""
    rec = conn.rec
    if kind == "idle_clients":
        if i % 2 and await conn.send(_good_request()):
            await conn.reply()
        return
    if kind == "long_waits":
        start = trio.current_time()
        if await conn.send(_frame(WaitSettled(digest=Digest(os.urandom(32)), wait_ms=LONG_WAIT_MS))):
            with trio.move_on_after(rec.duration_s + 1):
                try:
                    msg = await conn.replies.receive()
                except trio.EndOfChannel:
                    return
                if isinstance(msg, SettledReply):
                    rec.long_waits_answered += 1
                    rec.long_wait_max_s = max(rec.long_wait_max_s, trio.current_time() - start)
        return
    # slowloris / half_frames: one good request first, so the node has served this client once.
    if not await conn.send(_good_request()) or await conn.reply() is None:
        return
    if kind == "slowloris":
        frame = _frame(GetAccount(address=Address(os.urandom(20))))
        for b in frame[:-1]:  # never the last byte: the frame is never complete
            if not await conn.send(bytes([b])):
                return
            with trio.move_on_after(SLOW_BYTE_S):
                await conn.closed.wait()
    elif kind == "half_frames":
        body_half = os.urandom(HALF_FRAME_BYTES // 2)
        await conn.send(codec.HEADER.pack(HALF_FRAME_BYTES) + body_half)


async def _one(rec: AttackRecord, kind: str, i: int, host: str, port: int, t0: float) -> None:
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        rec.connect_failed += 1
        _note(rec, exc)
        return
    rec.opened += 1
    conn = _Conn(stream, rec, t0)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.reader)
            await _behave(conn, kind, i)
            await conn.closed.wait()  # hold the connection until the victim cuts it (or the attack ends)
    finally:
        if not conn.cut:
            rec.open_at_end += 1
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def _finished_waits(rec: AttackRecord, host: str, port: int, budget: list[int]) -> None:
    """``WaitSettled`` with ``wait_ms = 0`` for fresh unknown digests, one after another."""
    while budget[0] > 0:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            _note(rec, exc)
            await trio.sleep(0.1)
            continue
        decoder = codec.FrameDecoder(codec.DEFAULT_MAX_FRAME)
        try:
            while budget[0] > 0:
                budget[0] -= 1
                data = _frame(WaitSettled(digest=Digest(os.urandom(32)), wait_ms=0))
                await stream.send_all(data)
                rec.bytes_out += len(data)
                frames: list[bytes] = []
                while not frames:
                    got = await stream.receive_some(65536)
                    if not got:
                        raise trio.BrokenResourceError("closed by the victim")
                    rec.bytes_in += len(got)
                    frames = decoder.feed(got)
                rec.finished_waits += len(frames)
        except (trio.BrokenResourceError, OSError) as exc:
            _note(rec, exc)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)


def _raise_nofile(need: int) -> None:
    """Let this process hold ``need`` more descriptors (soft RLIMIT_NOFILE up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = soft + need if hard == resource.RLIM_INFINITY else min(hard, soft + need)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass  # connect failures will say so in the record


async def run_attack(rec: AttackRecord, host: str, port: int) -> AttackRecord:
    """Run the attack ``rec`` describes against ``host:port`` for ``rec.duration_s``; fill ``rec``.

    Resource handling: every connection is closed before this returns, also on cancellation."""
    _raise_nofile(rec.count + 64)
    t0 = trio.current_time()
    with trio.move_on_after(rec.duration_s):
        async with trio.open_nursery() as nursery:
            if rec.kind == "long_waits":
                budget = [MAX_FINISHED_WAITS]
                for _ in range(FINISHED_WAIT_CONNS):
                    nursery.start_soon(_finished_waits, rec, host, port, budget)
            for i in range(rec.count):
                nursery.start_soon(_one, rec, rec.kind, i, host, port, t0)
                await trio.sleep(OPEN_SPACING_S)
    rec.ended_s = rec.started_s + (trio.current_time() - t0)
    return rec
