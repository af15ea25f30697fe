"""What makes a big local cluster come up on a small machine: bounds that grow with the node count,
waves of starts, polling that does not flood the nodes, and memory read from the kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2pnode.localnet import (
    NodeMemory,
    read_vm_rss,
    ready_timeout_s,
    stop_grace_s,
    summarize_memory,
    wave_size,
)
from p2pnode.localnet.waits import MAX_POLL_S, POLL_S, poll_interval_s


@pytest.mark.parametrize(
    ("nodes", "cpus", "seconds"),
    [
        (1, 2, 60.0),
        (4, 2, 60.0),
        (16, 2, 60.0),
        (64, 2, 180.0),
        (64, 8, 60.0),
        (64, 1, 340.0),
        (128, 2, 340.0),
    ],
)
def test_ready_timeout_grows_with_the_nodes_per_core(nodes: int, cpus: int, seconds: float) -> None:
    assert ready_timeout_s(nodes, cpus) == seconds


def test_stop_grace_grows_with_the_nodes_per_core() -> None:
    assert (stop_grace_s(1, 2), stop_grace_s(4, 2), stop_grace_s(64, 2), stop_grace_s(64, 8)) == (
        10.5,
        12.0,
        42.0,
        18.0,
    )


def test_wave_size() -> None:
    assert (wave_size(1), wave_size(2), wave_size(4)) == (8, 8, 16)
    assert wave_size() == max(8, 4 * (os.cpu_count() or 1))


def test_poll_interval_bounds_the_request_rate() -> None:
    assert poll_interval_s(1) == poll_interval_s(4) == POLL_S
    assert poll_interval_s(64) == MAX_POLL_S
    for waiting in (1, 10, 50, 64):
        assert waiting / poll_interval_s(waiting) <= 64  # status requests per second


def test_read_vm_rss(tmp_path: Path) -> None:
    (tmp_path / "12").mkdir()
    status = "Name:\tpython\nVmPeak:\t  999 kB\nVmRSS:\t   56808 kB\nThreads: 3\n"
    (tmp_path / "12" / "status").write_text(status)
    (tmp_path / "13").mkdir()
    (tmp_path / "13" / "status").write_text("Name:\tzombie\nState:\tZ (zombie)\n")
    assert read_vm_rss(12, proc=tmp_path) == 56808 * 1024
    assert read_vm_rss(13, proc=tmp_path) is None  # a zombie has no VmRSS line
    assert read_vm_rss(14, proc=tmp_path) is None  # gone


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_read_vm_rss_of_this_process() -> None:
    rss = read_vm_rss(os.getpid())
    assert rss is not None and 2**20 < rss < 2**34


def test_summarize_memory() -> None:
    def m(rss: int, children: int) -> NodeMemory:
        return NodeMemory(name="n", role="full", pid=1, rss=rss, children_rss=children, processes=2)

    s = summarize_memory([m(30, 0), m(10, 5), m(20, 5), m(40, 10)])
    assert (s.nodes, s.median_rss, s.max_rss, s.total_rss) == (4, 20, 40, 100)
    assert (s.median_tree_rss, s.max_tree_rss, s.total_tree_rss) == (25, 50, 120)
    assert summarize_memory([]).nodes == 0
