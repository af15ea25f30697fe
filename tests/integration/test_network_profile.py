"""A memory cluster on a network profile: every connection crosses the link model on the virtual clock,
and partitions and slow links go through the same wrapper."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import trio

from p2pnode.net.linkmodel import NetworkProfile, load_profile
from p2pnode.testing import open_memory_cluster
from p2pnode.testing.faults import FaultControl

ROOT = Path(__file__).resolve().parents[2]
AWS5 = ROOT / "configs" / "network" / "aws-5.toml"
CONFIG = {"testing": {"enabled": True, "fault_control": True}}
JITTER_SIGMAS = 5  # a draw below the delay by more than this many standard deviations: p < 3e-7


def shortest_one_way_s(profile: NetworkProfile, regions: list[str]) -> dict[tuple[str, str], float]:
    """The least one-way time between regions over any chain of links (Floyd-Warshall): gossip may
    relay through a third node, and a measured table need not obey the triangle inequality. Each link
    counts its delay less ``JITTER_SIGMAS`` standard deviations of its jitter (never below 0)."""

    def floor(a: str, b: str) -> float:
        link = profile.link(a, b)
        return max(0.0, link.delay_ms - JITTER_SIGMAS * link.jitter_ms) / 1000

    d = {(a, b): 0.0 if a == b else floor(a, b) for a in regions for b in regions}
    for k in regions:
        for a in regions:
            for b in regions:
                d[a, b] = min(d[a, b], d[a, k] + d[k, b])
    return d


def settlement_bound_s(profile: NetworkProfile, validator_regions: list[str], via: int, quorum: int) -> float:
    """A lower bound on the settlement latency of a payment submitted to validator ``via``.

    The client's answer comes once ``via`` holds a certificate: ``quorum`` votes, its own among them.
    Every other vote it counts was made by a validator ``w`` that first received the order, which
    started at ``via``, and then reached ``via``: two trips, each along some chain of links and each
    link crossed no faster than its delay less its worst jitter draw (:func:`shortest_one_way_s`).
    In memory, CPU time does not advance the virtual clock, and the client sits next to its node
    (accepted streams are not modelled), so nothing else is owed. Hence the latency is at least the
    ``quorum - 1``-th smallest round trip from ``via`` to another validator: the slowest of the
    fastest quorum's round trips."""
    d = shortest_one_way_s(profile, sorted(set(validator_regions)))
    v = validator_regions[via]
    trips = sorted(d[v, w] + d[w, v] for i, w in enumerate(validator_regions) if i != via)
    return trips[quorum - 2]


async def test_four_validators_on_aws5_settle_no_faster_than_their_quorum_round_trips(
    autojump_clock: trio.abc.Clock,
) -> None:
    profile = load_profile(AWS5)
    async with open_memory_cluster(validators=4, accounts=4, seed=3, network=AWS5) as c:
        regions = [c.regions[n.name] for n in c.nodes]
        assert regions == list(profile.regions[:4])  # round-robin placement
        await c.wait_ready(peers=3)
        latencies: list[float] = []
        bounds: list[float] = []
        for k in range(12):
            via = k % 4
            t0 = trio.current_time()
            receipt = await c.pay(via, (via + 1) % 4, 5 + k, via=via)
            assert receipt.settled
            latencies.append(trio.current_time() - t0)
            bounds.append(settlement_bound_s(profile, regions, via, quorum=3))
        await c.wait_converged(applied=12)
        roots = {c.driver(n).core.ledger.root() for n in c.nodes}
        assert len(roots) == 1
        for latency, bound in zip(latencies, bounds, strict=True):
            assert latency >= bound
        # and not more than a few round trips: the model delays, it does not stall
        assert statistics.median(latencies) < 3 * profile.median_rtt_ms() / 1000
        assert statistics.median(latencies) > 0.5 * profile.median_rtt_ms() / 1000
        # every connection between the validators was dialed through the model
        stats = [c.links(n).transport.statistics() for n in c.nodes]  # type: ignore[union-attr]
        assert sum(s["modelled"] for s in stats) >= 6 and sum(s["unplaced"] for s in stats) == 0


async def test_slow_adds_to_the_profile_and_partitions_cut_through_the_same_wrapper(
    autojump_clock: trio.abc.Clock,
) -> None:
    profile = load_profile(AWS5)
    async with open_memory_cluster(validators=4, accounts=4, seed=3, network=AWS5, config=CONFIG) as c:
        regions = [c.regions[n.name] for n in c.nodes]
        await c.wait_ready(peers=3)
        # node-2's sends are 200 ms slower: its order leaves 200 ms late on every path
        await c.call(2, FaultControl(blocked=(), delay_ms=200))
        t0 = trio.current_time()
        assert (await c.pay(2, 3, 5, via=2)).settled
        assert trio.current_time() - t0 >= 0.200 + settlement_bound_s(profile, regions, 2, quorum=3)
        await c.call(2, FaultControl(blocked=(), delay_ms=0))
        # a partition through the cluster API uses the same wrapper as FaultControl
        await c.partition([0], [1, 2, 3])
        await trio.sleep(2)
        assert not c.driver(0).peers
        assert c.links(0).transport.blocked == {"n1:7000", "n2:7000", "n3:7000"}  # type: ignore[union-attr]
        assert (await c.pay(1, 2, 5, via=1)).settled  # 1, 2, 3 are a quorum
        await c.wait_converged(nodes=[1, 2, 3], applied=2)
        assert c.driver(0).core.ledger.applied_count() == 1
        await c.heal()
        with trio.fail_after(30):
            await c.wait_converged(applied=2)


@pytest.mark.parametrize("network", ["lan"])
async def test_a_profile_may_be_given_as_an_object(autojump_clock: trio.abc.Clock, network: str) -> None:
    profile = load_profile(ROOT / "configs" / "network" / f"{network}.toml")
    async with open_memory_cluster(validators=4, accounts=4, seed=1, network=profile) as c:
        await c.wait_ready(peers=3)
        t0 = trio.current_time()
        assert (await c.pay(0, 1, 5, via=0)).settled
        assert 0 < trio.current_time() - t0 < 0.005  # sub-millisecond round trips, not loopback
        assert set(c.regions.values()) == {"lan"}
