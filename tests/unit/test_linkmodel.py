"""Network profiles and the sans-I/O link model: loading (each error names its key) and the arithmetic
of one direction of a link (bandwidth serialization, delay and jitter, loss as one RTO, never reordered)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from p2pnode.errors import ConfigError
from p2pnode.net.linkmodel import MIN_RTO_S, Link, LinkState, load_profile, profile_from_dict

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "configs" / "network"


def _two(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "two", "regions": ["a", "b"], "delay_ms": {"a": [1, 30], "b": [70, 1]}}
    data.update(extra)
    return data


@pytest.mark.parametrize("name", ["lan", "aws-5", "aws-13"])
def test_shipped_profiles_load_and_name_their_source(name: str) -> None:
    p = load_profile(PROFILES / f"{name}.toml")
    assert p.name == name and p.source
    for a in p.regions:
        for b in p.regions:
            assert p.link(a, b).delay_ms >= 0


def test_aws5_median_round_trip_is_148_ms_and_places_round_robin() -> None:
    p = load_profile(PROFILES / "aws-5.toml")
    assert p.median_rtt_ms() == pytest.approx(148.0)
    assert p.rtt_ms("Frankfurt", "Singapore") == pytest.approx(154.0)
    assert p.link("Frankfurt", "Tokyo").jitter_ms == pytest.approx(111 * 0.05)
    names = [f"node-{i}" for i in range(7)]
    assert list(p.place(names).values()) == [*p.regions, p.regions[0], p.regions[1]]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (_two(regions=[]), "regions"),
        (_two(regions=["a", "a"]), "regions"),
        ({"regions": ["a"]}, "delay_ms"),
        (_two(delay_ms={"a": [1, 2], "b": [3]}), "delay_ms.b"),
        (_two(delay_ms={"a": [1, "x"], "b": [3, 1]}), "delay_ms.a"),
        (_two(delay_ms={"a": [1, -2], "b": [3, 1]}), "delay_ms.a"),
        (_two(delay_ms={"a": [1, 2], "b": [3, 1], "c": [1, 1]}), "delay_ms.c"),
        (_two(defaults={"loss": 0.9}), "defaults.loss"),
        (_two(defaults={"jitter_pct": 500}), "defaults.jitter_pct"),
        (_two(defaults={"bandwith_mbps": 10}), "bandwith_mbps"),
        (_two(defaults={"delay_ms": 3}), "[defaults]"),
        (_two(links={"a to b": {"loss": 0.1}}), "links.'a to b'"),
        (_two(links={"a -> c": {"loss": 0.1}}), "links.'a -> c'"),
        (_two(links={"a -> b": {"jitter_ms": "x"}}), "links.'a -> b'.jitter_ms"),
        (_two(placement={"mode": "random"}), "placement.mode"),
        (_two(placement={"nodes": {"node-0": "z"}}), "placement.nodes.node-0"),
        (_two(placement={"mode": "explicit"}), "placement.mode"),
        (_two(placement={"order": 1}), "placement: unknown key 'order'"),
        (_two(colour="blue"), "unknown key 'colour'"),
    ],
)
def test_every_error_names_its_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        profile_from_dict(data, "p.toml")
    assert key in str(info.value) and str(info.value).startswith("p.toml")


def test_unreadable_or_invalid_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.toml: cannot read"):
        load_profile(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("regions = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_profile(bad)


def test_overrides_and_explicit_placement() -> None:
    p = profile_from_dict(
        _two(
            links={"a -> b": {"delay_ms": 5, "loss": 0.1}},
            placement={"mode": "explicit", "nodes": {"x": "b", "y": "a"}},
        )
    )
    assert p.link("a", "b") == Link(5.0, 0.0, 0.1, 0.0)
    assert p.link("b", "a") == Link(70.0)
    assert p.place(["x", "y"]) == {"x": "b", "y": "a"}
    with pytest.raises(ConfigError, match="names no region for z"):
        p.place(["x", "z"])


def test_delay_only_each_chunk_arrives_one_delay_later() -> None:
    s = LinkState(Link(delay_ms=30), random.Random(0))
    assert s.due(1.0, 100) == pytest.approx(1.030)
    assert s.due(1.5, 1 << 20) == pytest.approx(1.530)  # unlimited bandwidth: size costs nothing


def test_bandwidth_serializes_chunks_one_after_another() -> None:
    s = LinkState(Link(delay_ms=10, bandwidth_mbps=8), random.Random(0))  # 1 MB/s: 1 byte per us
    assert s.due(0.0, 10_000) == pytest.approx(0.010 + 0.010)
    # handed over at the same instant: waits for the first to leave (busy until 10 ms), then 20 ms
    assert s.due(0.0, 20_000) == pytest.approx(0.030 + 0.010)
    # the link is idle again by 1 s: no queueing
    assert s.due(1.0, 1_000) == pytest.approx(1.001 + 0.010)


def test_jitter_is_reproducible_per_seed_and_never_reorders() -> None:
    link = Link(delay_ms=50, jitter_ms=20)

    def run(seed: int) -> list[float]:
        s = LinkState(link, random.Random(seed))
        return [s.due(i * 0.001, 100) for i in range(500)]

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    assert a == sorted(a)  # in order, as a TCP stream
    assert all(due >= i * 0.001 for i, due in enumerate(a))
    # chunks far apart are not held back by each other: the draws spread around the delay
    s = LinkState(link, random.Random(1))
    gaps = [s.due(i * 1.0, 100) - i * 1.0 for i in range(500)]
    assert min(gaps) < 0.040 and max(gaps) > 0.060
    assert sum(gaps) / len(gaps) == pytest.approx(0.050, abs=0.003)


def test_jitter_never_makes_the_delay_negative() -> None:
    s = LinkState(Link(delay_ms=1, jitter_ms=100), random.Random(3))
    now = 0.0
    for _ in range(200):
        now += 1.0  # far apart, so order does not lift them
        assert s.due(now, 10) >= now


def test_loss_adds_one_retransmission_timeout() -> None:
    lost = LinkState(Link(delay_ms=30, loss=0.5), random.Random(7))
    dues = [lost.due(i * 10.0, 100) - i * 10.0 for i in range(200)]
    assert set(round(d, 9) for d in dues) == {0.030, round(0.030 + MIN_RTO_S, 9)}
    assert 60 < sum(1 for d in dues if d > 0.1) < 140
    # a long link's RTO is its round trip, not the 200 ms minimum
    far = LinkState(Link(delay_ms=150, loss=0.5), random.Random(7))
    assert {round(far.due(i * 10.0, 1) - i * 10.0, 9) for i in range(50)} == {0.150, 0.450}


def test_a_lost_chunk_holds_back_the_ones_behind_it() -> None:
    s = LinkState(Link(delay_ms=30, loss=0.5), random.Random(7))
    dues = [s.due(i * 0.001, 10) for i in range(50)]
    assert dues == sorted(dues)  # head-of-line blocking, never overtaken
