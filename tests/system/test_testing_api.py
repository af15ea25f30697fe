"""p2pnode.testing over real processes: nothing outlives the block, and a failure keeps its evidence."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import trio

from p2pnode.testing import open_local_cluster

pytestmark = pytest.mark.slow


class Boom(Exception):
    pass


def _node_processes(directory: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "p2pnode" in cmd and str(directory) in cmd:
            found.append(p)
    return found


async def test_a_failing_body_stops_every_process_and_keeps_the_directory(tmp_path: Path) -> None:
    where = tmp_path / "cluster"
    with pytest.raises(Boom) as info, trio.fail_after(120):
        async with open_local_cluster(validators=4, accounts=2, directory=where) as cluster:
            assert len(cluster.running()) == 4 and len(_node_processes(where)) == 4
            assert (await cluster.pay(0, 1, 7, via="node-2")).settled
            raise Boom("the test body failed")
    assert _node_processes(where) == []
    assert any(str(where) in note for note in info.value.__notes__)
    assert (where / "logs" / "node-0.log").exists()


async def test_kill_restart_and_partition_on_processes(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with open_local_cluster(validators=4, accounts=3, directory=tmp_path / "c") as cluster:
            await cluster.kill("node-3")
            assert [n.name for n in cluster.running()] == ["node-0", "node-1", "node-2"]
            assert (await cluster.pay(0, 1, 5)).settled  # three of four are a quorum
            await cluster.restart("node-3")
            root = await cluster.wait_converged()
            assert (await cluster.status("node-3")).root == root.hex()
            await cluster.partition(["node-0", "node-1"], ["node-2", "node-3"])
            with trio.move_on_after(3):  # no side has a quorum: nothing can settle meanwhile
                await cluster.pay(1, 2, 5, via="node-0")
                raise AssertionError("a payment settled without a quorum")
            await cluster.heal()
            # The wallet completes the payment it left pending before it signs a new one.
            receipt = await cluster.pay(1, 2, 1, via="node-3")
            assert receipt.completed is not None and receipt.seq == 1
            await cluster.wait_converged()
            assert await cluster.balance(2, via="node-0") == 1_000_000_000 + 5 + 1
