"""FaultControl reaches a node only through its test-only hooks; partitions and slow links then work
through the transport wrapper, and the driver never knows. Virtual clock, in-memory network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from p2pnode.errors import RemoteError
from p2pnode.testing import open_memory_cluster
from p2pnode.testing.faults import BEHAVIOURS, FaultControl
from p2pnode.wire.messages import StatusReply

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"testing": {"enabled": True, "fault_control": True}}


async def test_a_node_without_testing_refuses_fault_control(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=4, seed=1, bootstrap_all=False) as c:
        await c.wait_ready(peers=3)
        other = c.driver(1).node_id
        with pytest.raises(RemoteError, match="not a client request"):
            await c.call(0, FaultControl(blocked=(other,), delay_ms=0))
        await trio.sleep(2)
        assert other in c.driver(0).peers  # nothing was cut


async def test_partition_and_heal_through_fault_control(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=4, seed=1, bootstrap_all=False, config=CONFIG) as c:
        await c.wait_ready(peers=3)
        ids = [c.driver(n).node_id for n in c.nodes]
        groups = ({0, 1}, {2, 3})
        for i in range(4):  # both sides of the cut are told (the partition rule)
            blocked = tuple(ids[j] for g in groups if i not in g for j in g)
            reply = await c.call(i, FaultControl(blocked=blocked, delay_ms=0))
            assert isinstance(reply, StatusReply)
            assert sorted(reply.info["faults"]["blocked"]) == sorted(b.hex() for b in blocked)
        await trio.sleep(5)  # dial rounds and keepalives pass: the cut holds
        for g in groups:
            for i in g:
                assert set(c.driver(i).peers) == {ids[j] for j in g if j != i}
        for i in range(4):
            await c.call(i, FaultControl(blocked=(), delay_ms=0))
        with trio.fail_after(5):  # the heal forgets dial backoff: reconnects within a few rounds
            await c.wait_ready(peers=3)
        assert (await c.pay(0, 1, 5, via=0)).settled
        await c.wait_converged(applied=1)


async def test_a_slow_link_delays_but_settles(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=4, seed=1, bootstrap_all=False, config=CONFIG) as c:
        await c.wait_ready(peers=3)
        await c.call(2, FaultControl(blocked=(), delay_ms=150))
        for k in range(3):
            assert (await c.pay(k, k + 1, 2, via=0)).settled
        await c.wait_converged(applied=3)
        assert len(c.driver(2).peers) == 3  # slow, not cut


def test_no_role_name_in_the_core_or_the_driver() -> None:
    """Byzantine behaviours live in p2pnode/testing/faults; the core and the driver never name one (as a
    string: English words such as "flood publishing" in a docstring are not a role)."""
    pattern = re.compile("|".join(rf"[\"']{re.escape(r)}[\"']" for r in BEHAVIOURS))
    assert set(BEHAVIOURS) >= {"equivocate", "forget_locks", "bad_signature", "silent"}
    found = []
    for layer in ("core", "net"):
        for path in sorted((ROOT / "p2pnode" / layer).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_core_and_the_driver_do_not_import_testing() -> None:
    found = [
        str(p.relative_to(ROOT))
        for layer in ("core", "net", "wire")
        for p in (ROOT / "p2pnode" / layer).rglob("*.py")
        if re.search(r"^\s*(from|import) p2pnode\.testing", p.read_text(encoding="utf-8"), re.M)
    ]
    assert not found
