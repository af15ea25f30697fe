"""Open-file limits, connection caps, frame and idle timeouts on a framed stream, and their config keys."""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pnode.config import config_from_dict
from p2pnode.errors import ConfigError, LocalError
from p2pnode.net.conn import FramedStream, FrameTimeout, IdleTimeout
from p2pnode.net.limits import ConnectionCaps, ConnectionGate, connection_caps, raise_nofile_limit
from p2pnode.wire import codec
from p2pnode.wire.messages import Ping, StatusRequest


def test_raise_nofile_limit_raises_the_soft_limit_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        fd = raise_nofile_limit()
        now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)  # read back from the OS
        assert fd.before == lowered
        assert fd.soft == now
        want = hard if hard != resource.RLIM_INFINITY else max(lowered, 1 << 16)
        assert now == want
        assert fd.hard == (-1 if hard == resource.RLIM_INFINITY else hard)
        assert raise_nofile_limit().soft == now  # idempotent
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


BIG = (1 << 20) - 64  # what an unlimited (or absent) limit leaves after the reserve


@pytest.mark.parametrize(
    ("soft", "reserve", "peers", "clients", "expected"),
    [
        (1 << 20, 64, 32, 128, ConnectionCaps(max_open=BIG, max_peers=32, max_clients=128, lowered=False)),
        (256, 64, 32, 128, ConnectionCaps(max_open=192, max_peers=32, max_clients=128, lowered=False)),
        (160, 64, 32, 128, ConnectionCaps(max_open=96, max_peers=19, max_clients=77, lowered=True)),
        (70, 64, 32, 128, ConnectionCaps(max_open=6, max_peers=1, max_clients=5, lowered=True)),
        (66, 64, 1, 1, ConnectionCaps(max_open=2, max_peers=1, max_clients=1, lowered=False)),
        (-1, 64, 32, 128, ConnectionCaps(max_open=BIG, max_peers=32, max_clients=128, lowered=False)),
    ],
)
def test_connection_caps_fit_the_open_file_limit(
    soft: int, reserve: int, peers: int, clients: int, expected: ConnectionCaps
) -> None:
    caps = connection_caps(soft_limit=soft, fd_reserve=reserve, max_peers=peers, max_clients=clients)
    assert caps == expected
    assert caps.max_peers + caps.max_clients <= caps.max_open
    assert caps.max_peers <= peers and caps.max_clients <= clients


def test_a_limit_below_the_reserve_is_a_local_error() -> None:
    with pytest.raises(LocalError, match="fd_reserve"):
        connection_caps(soft_limit=64, fd_reserve=64, max_peers=32, max_clients=128)


def test_the_gate_counts_and_refuses() -> None:
    gate = ConnectionGate(ConnectionCaps(max_open=3, max_peers=2, max_clients=1, lowered=False))
    assert [gate.try_open() for _ in range(4)] == [True, True, True, False]
    gate.close()
    assert gate.try_open()
    assert gate.try_client() and not gate.try_client()
    gate.client_done()
    assert gate.try_client()


def test_config_keys_are_validated() -> None:
    base = {"node": {"key_file": "k", "genesis": "g", "data_dir": "d"}}
    cfg = config_from_dict(base, Path("."))
    assert cfg.peers.send_queue_bytes == 4 << 20 and cfg.peers.write_timeout_s == 10.0
    assert (cfg.limits.max_clients, cfg.limits.client_idle_s) == (128, 60.0)
    assert (cfg.limits.frame_timeout_s, cfg.limits.fd_reserve) == (10.0, 64)
    with pytest.raises(ConfigError, match="send_queue_bytes: must be >= limits.max_frame"):
        config_from_dict({**base, "peers": {"send_queue_bytes": 4096}}, Path("."))
    for section, key, bad in [
        ("peers", "send_queue_bytes", 10),
        ("peers", "write_timeout_s", 0),
        ("limits", "max_clients", 0),
        ("limits", "client_idle_s", 0),
        ("limits", "frame_timeout_s", 0),
        ("limits", "fd_reserve", 1),
    ]:
        with pytest.raises(ConfigError, match=f"{section}.{key}"):
            config_from_dict({**base, section: {key: bad}}, Path("."))


async def test_a_half_sent_frame_times_out(autojump_clock: trio.abc.Clock) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    conn = FramedStream(theirs, 1 << 20, frame_timeout=3.0)
    whole = codec.frame(Ping(nonce=7).encode())
    await ours.send_all(whole + whole[:3])  # one frame, then the start of another
    assert isinstance(await conn.receive(), Ping)
    started = trio.current_time()
    with pytest.raises(FrameTimeout, match="within 3s") as info:
        await conn.receive()
    assert trio.current_time() - started == pytest.approx(3.0)
    assert info.value.buffered == 3


async def test_a_frame_whose_rest_waited_in_the_buffer_is_read_not_timed_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The frame deadline counts time spent waiting for bytes, not time the reader spent elsewhere:
    a node busy for longer than the timeout after the start of a frame arrived finds the rest
    buffered and reads it."""
    ours, theirs = trio.testing.memory_stream_pair()
    conn = FramedStream(theirs, 1 << 20, frame_timeout=3.0)
    whole = codec.frame(Ping(nonce=7).encode())
    second = codec.frame(Ping(nonce=8).encode())
    await ours.send_all(whole + second[:3])
    assert isinstance(await conn.receive(), Ping)  # the start of the second frame came with it
    autojump_clock.jump(5.0)  # the caller handles the first frame for longer than the frame timeout
    await ours.send_all(second[3:])
    msg = await conn.receive()
    assert isinstance(msg, Ping) and msg.nonce == 8
    # Waiting still counts: two seconds, then one more, is a slow frame.
    await ours.send_all(second[:3])
    with trio.move_on_after(2.0):
        await conn.receive()
    started = trio.current_time()
    with pytest.raises(FrameTimeout, match="within 3s"):
        await conn.receive()
    assert trio.current_time() - started == pytest.approx(1.0)


async def test_buffered_frames_take_turns_with_other_tasks() -> None:
    """One read can bring hundreds of frames (a flood); each one handed out is a checkpoint, so a
    second connection's frame is served between two of the flood's, not after all of them."""
    flood_ours, flood_theirs = trio.testing.memory_stream_pair()
    honest_ours, honest_theirs = trio.testing.memory_stream_pair()
    flood = FramedStream(flood_theirs, 1 << 20)
    honest = FramedStream(honest_theirs, 1 << 20)
    await flood_ours.send_all(b"".join(codec.frame(Ping(nonce=i).encode()) for i in range(200)))
    await honest_ours.send_all(codec.frame(Ping(nonce=999).encode()))
    order: list[int] = []

    async def read(conn: FramedStream, n: int) -> None:
        for _ in range(n):
            msg = await conn.receive()
            assert isinstance(msg, Ping)
            order.append(msg.nonce)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, flood, 200)
        nursery.start_soon(read, honest, 1)
    assert len(order) == 201
    assert order.index(999) < 5, order[:10]


async def test_a_frame_sent_slowly_times_out_from_its_first_byte(autojump_clock: trio.abc.Clock) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    conn = FramedStream(theirs, 1 << 20, frame_timeout=3.0)

    async def dribble() -> None:
        await ours.send_all(struct.pack(">I", 100))
        for _ in range(99):
            await trio.sleep(1)
            await ours.send_all(b"\x00")

    async with trio.open_nursery() as n:
        n.start_soon(dribble)
        started = trio.current_time()
        with pytest.raises(FrameTimeout):
            await conn.receive_raw()
        assert trio.current_time() - started == pytest.approx(3.0)
        n.cancel_scope.cancel()


async def test_idle_time_bounds_only_the_wait_for_a_frame_to_start(autojump_clock: trio.abc.Clock) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    conn = FramedStream(theirs, 1 << 20, frame_timeout=5.0)
    started = trio.current_time()
    with pytest.raises(IdleTimeout, match="no request within 2s"):
        await conn.receive(idle_s=2.0)
    assert trio.current_time() - started == pytest.approx(2.0)
    whole = codec.frame(StatusRequest().encode())

    async def late() -> None:
        await trio.sleep(1.5)
        await ours.send_all(whole[:2])
        await trio.sleep(1.5)  # past the idle time, within the frame time: the frame is still taken
        await ours.send_all(whole[2:])

    async with trio.open_nursery() as n:
        n.start_soon(late)
        assert isinstance(await conn.receive(idle_s=2.0), StatusRequest)


DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        ("peer_slow", ("peer", "reason", "queued_bytes", "dropped")),
        ("client_closed", ("reason", "peer")),
        ("request_capped", ("kind", "reason", "unlogged", "peer")),
        ("connection_refused", ("addr", "kind", "reason", "unlogged")),
        ("limits", ("fd_soft_before", "fd_soft", "fd_hard", "fd_reserve", "max_open", "lowered")),
    ],
)
def test_the_new_events_are_documented(event: str, fields: tuple[str, ...]) -> None:
    lines = (DOCS / "logs.md").read_text().splitlines()
    row = next((line for line in lines if line.startswith(f"| `{event}` |")), "")
    assert row, f"{event} is not in docs/logs.md"
    for name in fields:
        assert f"`{name}`" in row


def test_every_new_key_is_documented_in_defaults_and_dos_md() -> None:
    defaults = (Path(__file__).resolve().parents[2] / "configs" / "defaults.toml").read_text()
    dos = (DOCS / "dos.md").read_text()
    for section, key in [
        ("peers", "send_queue_bytes"),
        ("peers", "write_timeout_s"),
        ("limits", "max_clients"),
        ("limits", "client_idle_s"),
        ("limits", "frame_timeout_s"),
        ("limits", "fd_reserve"),
        ("limits", "client_max_frame"),
        ("peers", "handshake_rate"),
        ("peers", "handshake_burst"),
        ("peers", "stranger_rx_rate"),
        ("peers", "stranger_rx_burst"),
        ("peers", "useless_rate"),
        ("peers", "useless_burst"),
    ]:
        assert f"\n{key} = " in defaults
        assert f"`{section}.{key}`" in dos
