"""The link-fault transport wrapper: partitions refuse and cut, delays are pipelined and keep order.

Under Trio's virtual clock (``MockClock(autojump_threshold=0)``): no wall-clock sleep anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pnode.net.transport import MemoryNetwork
from p2pnode.testing.faults.links import FaultyTransport, LinkCut

ROOT = Path(__file__).resolve().parents[2]


async def _pair(
    nursery: trio.Nursery, received: list[tuple[float, bytes]]
) -> tuple[FaultyTransport, FaultyTransport]:
    """Host "a" (wrapped) and host "b" (wrapped, listening on 7000, recording what it receives)."""
    net = MemoryNetwork()
    a, b = FaultyTransport(net.transport("a")), FaultyTransport(net.transport("b"))

    async def record(stream: trio.abc.Stream, addr: str) -> None:
        try:
            while data := await stream.receive_some():
                received.append((trio.current_time(), bytes(data)))
        except trio.BrokenResourceError:
            pass

    async def idle(stream: trio.abc.Stream, addr: str) -> None:
        await trio.sleep_forever()

    await nursery.start(b.serve, "b", 7000, record)
    await nursery.start(a.serve, "a", 7000, idle)
    return a, b


async def test_delayed_frames_leave_at_queue_time_plus_delay_in_order(autojump_clock: trio.abc.Clock) -> None:
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, _ = await _pair(nursery, received)
        stream = await a.connect("b", 7000)
        a.set_delay(0.150)
        t0 = trio.current_time()
        for i in range(5):  # queued 10 ms apart: pipelined, not 150 ms per write
            await stream.send_all(b"%d" % i)
            await trio.sleep(0.010)
        a.set_delay(0.0)  # a shorter delay never lets later bytes overtake earlier ones
        await stream.send_all(b"z")
        await trio.sleep(1)
        assert b"".join(d for _, d in received) == b"01234z"
        first = received[0][0] - t0
        assert first == pytest.approx(0.150, abs=1e-6)
        assert received[-1][0] - t0 < 0.150 + 5 * 0.010 + 1e-6  # not 5 x 150 ms
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_send_all_returns_before_the_delay(autojump_clock: trio.abc.Clock) -> None:
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, _ = await _pair(nursery, received)
        stream = await a.connect("b", 7000)
        a.set_delay(5.0)
        t0 = trio.current_time()
        await stream.send_all(b"x")
        assert trio.current_time() == t0  # queued, not held
        await stream.aclose()  # lets the queued bytes leave first
        assert received and received[0][0] - t0 == pytest.approx(5.0, abs=1e-6)
        nursery.cancel_scope.cancel()


async def test_partition_refuses_dials_and_cuts_streams_then_heals(autojump_clock: trio.abc.Clock) -> None:
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, _ = await _pair(nursery, received)
        stream = await a.connect("b", 7000)
        await stream.send_all(b"before")

        failed: list[BaseException] = []

        async def read() -> None:
            try:
                await stream.receive_some()
            except LinkCut as exc:
                failed.append(exc)

        nursery.start_soon(read)
        await trio.sleep(0.1)
        a.block({"b:7000"})
        await trio.sleep(0.1)
        assert failed, "a pending receive must fail when the link is cut"
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"after")
        with pytest.raises(OSError):
            await a.connect("b", 7000)
        await stream.aclose()
        a.block(())  # heal
        again = await a.connect("b", 7000)
        await again.send_all(b"healed")
        await trio.sleep(0.1)
        assert b"".join(d for _, d in received) == b"beforehealed"
        await again.aclose()
        nursery.cancel_scope.cancel()


def test_production_process_does_not_know_the_fault_control_tag() -> None:
    """Without p2pnode.testing imported, tag 49 is unknown: a FaultControl frame is refused as such."""
    code = (
        "import p2pnode.net.node, p2pnode.net.main, p2pnode.wire.messages as m\n"
        "from p2pnode.errors import DecodeError\n"
        "assert 49 not in m.REGISTRY\n"
        "data = bytes.fromhex('933191c420' + '00' * 32 + 'ccfa')\n"
        "try:\n    m.decode(data)\nexcept DecodeError as e:\n    print(e)\nelse:\n    raise SystemExit(1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "unknown message tag 49" in out.stdout
