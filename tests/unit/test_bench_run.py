"""``run_bench`` against in-process fake nodes: crypto timed before the load, open-loop latency from the
scheduled send, and node counters an old node does not report shown as unknown."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from p2pnode.tools import bench
from p2pnode.wire.messages import Transfer
from tests.unit.test_latency import FAKE_COST, FakeCluster, make_cluster, stub_digest, stub_make_order


class SlowCluster(FakeCluster):
    """Every payment takes 50 ms (virtual) to settle."""

    async def settle_later(self, t: Transfer, digest: bytes) -> None:
        await trio.sleep(0.05)
        self.next_seq[t.sender] = t.seq + 1
        self.in_flight -= 1
        self.event(digest).set()


async def test_open_loop_behind_schedule(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    cluster = make_cluster(tmp_path, accounts=1, nodes=1)
    fake = SlowCluster()
    submitted_at_measure: list[int] = []

    def measure() -> bench.CryptoCost:
        submitted_at_measure.append(len(fake.submitted))
        return FAKE_COST

    opts = bench.BenchOptions(count=6, rate=100.0)
    async with trio.open_nursery() as n:
        fake.nursery = n
        result = await bench.run_bench(
            cluster,
            opts,
            connect=fake.connect,
            make_order=stub_make_order,
            transfer_digest=stub_digest,
            cpu_reader=lambda pid: 1.0,  # idle nodes: quiet at once
            pids={"node-0": 100},
            progress=lambda done, total: None,
            measure=measure,
        )
    # Timed once, with the nodes quiet, before any payment was sent.
    assert submitted_at_measure == [0] and result.crypto is FAKE_COST and result.quiet is True
    assert result.settled == 6
    # One account, so one payment at a time: payment k is scheduled at 10k ms but sent after the
    # previous one settled, about 50k ms; its latency counts from the schedule.
    assert result.scheduled_s == pytest.approx([k / 100 for k in range(6)])
    for k in range(6):
        lag = result.sent_s[k] - result.scheduled_s[k]
        assert lag == pytest.approx(0.04 * k, abs=0.002)
        assert result.latencies_s[k] == pytest.approx(result.service_s[k] + lag)
        assert 0.05 <= result.service_s[k] < 0.052
    assert result.schedule_lag_s == pytest.approx(0.2, abs=0.002)
    doc = bench.build_document(cluster, opts, result, FAKE_COST, None, cpus=2)
    assert doc["schedule_kept"] is False
    assert doc["client_latency"]["max"] > 250 > doc["service_latency"]["max"]
    # The fake nodes report no counters: unknown, never zero.
    assert doc["roles"]["validator"]["rx_frames_per_payment"] is None
    assert doc["nodes"][0]["counts"]["signatures"] is None
    text = bench.render_document(doc, None)
    assert "SCHEDULE NOT KEPT" in text and "n/a" in text


async def test_closed_loop_has_no_schedule(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    cluster = make_cluster(tmp_path, accounts=2, nodes=2)
    fake = FakeCluster()
    async with trio.open_nursery() as n:
        fake.nursery = n
        result = await bench.run_bench(
            cluster,
            bench.BenchOptions(count=4, window=2),
            connect=fake.connect,
            make_order=stub_make_order,
            transfer_digest=stub_digest,
            cpu_reader=lambda pid: 1.0,
            progress=lambda done, total: None,
        )
    assert result.crypto is None and result.quiet is None  # nothing asked to be timed
    assert result.scheduled_s == [] and result.latencies_s == result.service_s
