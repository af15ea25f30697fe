"""The link transport wrapper: partitions refuse and cut, delays are pipelined and keep order, and a
network profile holds the bytes of a dialed stream for exactly the one-way delay of each direction.

Under Trio's virtual clock (``MockClock(autojump_threshold=0)``): no wall-clock sleep anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pnode.config import NodeConfig, config_from_dict
from p2pnode.errors import ConfigError
from p2pnode.net.linkmodel import NetworkProfile, profile_from_dict
from p2pnode.net.links import LinkModel, link_model
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


# == the link model ================================================================================
def _profile(**defaults: float) -> NetworkProfile:
    """Two regions; a -> b 30 ms, b -> a 70 ms one way (an asymmetric pair shows each direction)."""
    return profile_from_dict(
        {"name": "two", "regions": ["A", "B"], "delay_ms": {"A": [1, 30], "B": [70, 1]}, "defaults": defaults}
    )


def _models(profile: NetworkProfile) -> tuple[LinkModel, LinkModel]:
    regions = {"a:7000": "A", "b:7000": "B"}
    return (
        LinkModel(profile=profile, region="A", regions=regions, name="a"),
        LinkModel(profile=profile, region="B", regions=regions, name="b"),
    )


async def _modelled_pair(
    nursery: trio.Nursery, profile: NetworkProfile, received: list[tuple[float, bytes]], *, echo: bool = False
) -> tuple[FaultyTransport, FaultyTransport, list[trio.abc.Stream]]:
    """Host "a" (region A) and host "b" (region B, listening on 7000), both wrapped with the model;
    b records what it reads and, with ``echo``, sends each read straight back."""
    net = MemoryNetwork()
    ma, mb = _models(profile)
    a = FaultyTransport(net.transport("a"), model=ma)
    b = FaultyTransport(net.transport("b"), model=mb)
    accepted: list[trio.abc.Stream] = []

    async def serve_b(stream: trio.abc.Stream, addr: str) -> None:
        accepted.append(stream)
        try:
            while data := await stream.receive_some():
                received.append((trio.current_time(), bytes(data)))
                if echo:
                    await stream.send_all(data)
        except trio.BrokenResourceError:
            pass

    async def idle(stream: trio.abc.Stream, addr: str) -> None:
        await trio.sleep_forever()

    await nursery.start(b.serve, "b", 7000, serve_b)
    await nursery.start(a.serve, "a", 7000, idle)
    return a, b, accepted


async def test_each_direction_of_a_dialed_stream_takes_its_own_one_way_delay(
    autojump_clock: trio.abc.Clock,
) -> None:
    """a dials b: a -> b takes 30 ms, the echo b -> a takes 70 ms; b's accepted stream adds nothing
    (the dialer models both directions, so the round trip is 100 ms, not 200)."""
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, b, accepted = await _modelled_pair(nursery, _profile(), received, echo=True)
        stream = await a.connect("b", 7000)
        t0 = trio.current_time()
        await stream.send_all(b"ping")
        assert trio.current_time() == t0  # queued, not held
        back = await stream.receive_some()
        assert back == b"ping"
        assert [d for _, d in received] == [b"ping"]
        assert received[0][0] - t0 == pytest.approx(0.030, abs=1e-9)
        assert trio.current_time() - t0 == pytest.approx(0.100, abs=1e-9)
        assert accepted[0].remote == "" and accepted[0].send_link is None  # type: ignore[attr-defined]
        assert a.statistics()["modelled"] == 1 and b.statistics()["accepted"] == 1
        # b speaks first: its bytes reach a 70 ms later
        t1 = trio.current_time()
        await accepted[0].send_all(b"news")
        assert await stream.receive_some() == b"news"
        assert trio.current_time() - t1 == pytest.approx(0.070, abs=1e-9)
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_bandwidth_serializes_bytes_in_both_directions(autojump_clock: trio.abc.Clock) -> None:
    """8 Mbit/s = 1 byte per microsecond: 20 kB cost 20 ms on top of the delay, and a second chunk
    handed over at once waits for the first."""
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, _, accepted = await _modelled_pair(nursery, _profile(bandwidth_mbps=8), received)
        stream = await a.connect("b", 7000)
        t0 = trio.current_time()
        await stream.send_all(b"x" * 20_000)
        await stream.send_all(b"y" * 10_000)
        await trio.sleep(1)
        times = [round(t - t0, 9) for t, _ in received]
        assert b"".join(d for _, d in received) == b"x" * 20_000 + b"y" * 10_000
        assert times[0] == pytest.approx(0.020 + 0.030) and times[-1] == pytest.approx(0.030 + 0.030)
        t1 = trio.current_time()
        await accepted[0].send_all(b"z" * 5_000)
        got = b""
        while len(got) < 5_000:
            got += await stream.receive_some()
        assert trio.current_time() - t1 == pytest.approx(0.005 + 0.070, abs=1e-9)
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_slow_delay_adds_to_the_profile(autojump_clock: trio.abc.Clock) -> None:
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, _, _ = await _modelled_pair(nursery, _profile(), received)
        stream = await a.connect("b", 7000)
        a.set_delay(0.100)
        t0 = trio.current_time()
        await stream.send_all(b"slow")
        await trio.sleep(1)
        assert received[0][0] - t0 == pytest.approx(0.130, abs=1e-9)
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_partition_cuts_a_modelled_stream_and_drops_what_it_held(
    autojump_clock: trio.abc.Clock,
) -> None:
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, _, accepted = await _modelled_pair(nursery, _profile(), received)
        stream = await a.connect("b", 7000)
        await trio.sleep(0.1)
        await accepted[0].send_all(b"in flight")  # due at a in 70 ms
        await stream.send_all(b"also in flight")  # due at b in 30 ms
        await trio.sleep(0.010)
        a.block({"b:7000"})
        with pytest.raises(LinkCut):
            await stream.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"after")
        with pytest.raises(OSError, match="link cut"):
            await a.connect("b", 7000)
        await trio.sleep(1)
        assert received == []  # the queued bytes were lost with the link
        assert a.statistics()["refused"] == 1
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_the_end_of_the_stream_arrives_after_the_bytes_before_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, _, accepted = await _modelled_pair(nursery, _profile(), received)
        stream = await a.connect("b", 7000)
        await trio.sleep(0.1)
        t0 = trio.current_time()
        await accepted[0].send_all(b"last words")
        await accepted[0].aclose()
        assert await stream.receive_some() == b"last words"
        assert trio.current_time() - t0 == pytest.approx(0.070, abs=1e-9)
        assert await stream.receive_some() == b""
        assert await stream.receive_some() == b""  # and stays ended
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_receive_some_returns_at_most_max_bytes_and_keeps_the_rest(
    autojump_clock: trio.abc.Clock,
) -> None:
    received: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, _, accepted = await _modelled_pair(nursery, _profile(), received)
        stream = await a.connect("b", 7000)
        await trio.sleep(0.1)
        await accepted[0].send_all(b"abcdefgh")
        parts = [await stream.receive_some(3) for _ in range(3)]
        assert parts == [b"abc", b"def", b"gh"]
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_jitter_is_reproducible_and_an_unplaced_address_is_not_modelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def arrivals() -> list[float]:
        received: list[tuple[float, bytes]] = []
        async with trio.open_nursery() as nursery:
            a, _, _ = await _modelled_pair(nursery, _profile(jitter_ms=5), received)
            stream = await a.connect("b", 7000)
            t0 = trio.current_time()
            for i in range(20):
                await stream.send_all(b"%02d" % i)
                await trio.sleep(0.5)  # far apart: each arrival shows its own draw
            await stream.aclose()
            nursery.cancel_scope.cancel()
        return [round(t - t0 - 0.5 * i, 9) for i, (t, _) in enumerate(received)]

    first, second = await arrivals(), await arrivals()
    assert first == second and len(set(first)) > 10
    assert 0.020 < min(first) and max(first) < 0.040

    net = MemoryNetwork()
    ma, _ = _models(_profile())
    a = FaultyTransport(net.transport("a"), model=ma)
    plain = FaultyTransport(net.transport("c"))
    got: list[float] = []

    async def serve_c(stream: trio.abc.Stream, addr: str) -> None:
        await stream.receive_some()
        got.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        await nursery.start(plain.serve, "c", 7000, serve_c)
        await nursery.start(a.serve, "a", 7000, serve_c)
        stream = await a.connect("c", 7000)
        t0 = trio.current_time()
        await stream.send_all(b"hi")
        await trio.sleep(1)
        assert got == [t0] and a.statistics()["unplaced"] == 1
        await stream.aclose()
        nursery.cancel_scope.cancel()


def _cfg(tmp_path: Path, network: Mapping[str, object]) -> NodeConfig:
    data = {"node": {"key_file": "k", "genesis": "g", "data_dir": "d", "name": "n"}, "network": network}
    return config_from_dict(data, tmp_path, source=tmp_path / "node-0.toml")


def test_network_section_off_by_default_and_errors_name_their_key(tmp_path: Path) -> None:
    profile = ROOT / "configs" / "network" / "aws-5.toml"
    assert (
        link_model(config_from_dict({"node": {"key_file": "k", "genesis": "g", "data_dir": "d"}}, tmp_path))
        is None
    )
    ok = _cfg(tmp_path, {"profile": str(profile), "region": "Tokyo", "peers": ["h:1=Frankfurt"], "seed": 4})
    model = link_model(ok)
    assert model is not None and model.region == "Tokyo" and model.regions == {"h:1": "Frankfurt"}
    assert model.links("h:1") == (
        model.profile.link("Tokyo", "Frankfurt"),
        model.profile.link("Frankfurt", "Tokyo"),
    )
    bad_shape: list[tuple[dict[str, object], str]] = [
        ({"region": "Tokyo"}, "network.region and network.peers need network.profile"),
        ({"profile": str(profile)}, "network.region: missing"),
        ({"profile": str(profile), "region": "Tokyo", "peers": ["h:1"]}, r"network.peers\[0\]"),
        ({"profile": str(profile), "region": "Tokyo", "peers": ["h=Tokyo"]}, r"network.peers\[0\]"),
        ({"profile": str(profile), "region": "Tokyo", "colour": 1}, "unknown key network.colour"),
    ]
    for table, message in bad_shape:
        with pytest.raises(ConfigError, match=message):
            _cfg(tmp_path, table)
    bad_model: list[tuple[dict[str, object], str]] = [
        (
            {"profile": str(tmp_path / "nope.toml"), "region": "x"},
            "node-0.toml: network.profile: .*nope.toml",
        ),
        ({"profile": str(profile), "region": "Mars"}, "node-0.toml: network.region: 'Mars'"),
        (
            {"profile": str(profile), "region": "Tokyo", "peers": ["h:1=Tokyo", "h:2=Mars"]},
            r"network.peers\[1\]",
        ),
    ]
    for table, message in bad_model:
        with pytest.raises(ConfigError, match=message):
            link_model(_cfg(tmp_path, table))
