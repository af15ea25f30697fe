"""A hand-made equivocation is named at once, through the command line, on real node processes.

The payer signs two different orders for seq 0 (by hand: the project's wallet never does) and hands
them to the two halves of a partitioned 4-validator committee, so the votes split 2 + 2 (quorum 3).
After the heal, ``p2pnode pay``, ``balance`` and ``status`` each say "blocked" in one line on stderr
and exit 1, immediately rather than after a timeout.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from p2pnode.client import SlotBlocked
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.testing import open_local_cluster
from tests.system.conftest import cli

pytestmark = pytest.mark.slow


async def test_split_votes_are_reported_at_once_by_pay_balance_and_status(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with open_local_cluster(validators=4, accounts=2, directory=tmp_path / "c") as cluster:
            payer, payee = cluster.accounts
            await cluster.partition(["node-0", "node-1"], ["node-2", "node-3"])
            a = make_order(payer.key, cluster.chain_id, payee.address, 5, 0)
            b = make_order(payer.key, cluster.chain_id, payee.address, 6, 0)
            for node, order in (("node-0", a), ("node-2", b)):
                async with cluster.client(node) as c:
                    await c.submit(order)
            # Each side locks and votes for its own order; neither reaches 3 votes.
            for node in cluster.nodes:
                async with cluster.client(node) as c:
                    while True:
                        with trio.move_on_after(0.2):
                            await c.wait_settled(transfer_digest((a if node.index < 2 else b).transfer))
                            raise AssertionError("an order settled without a quorum")
                        break
            await cluster.heal()
            while not all([(await cluster.status(n)).blocked for n in cluster.nodes]):
                await trio.sleep(0.1)
            status = await cluster.status("node-3")
            (slot,) = status.blocked
            assert slot.sender == payer.address.hex() and slot.seq == 0
            assert sorted(slot.orders.values()) == [2, 2]

            node = cluster.cluster.node("node-1").address
            assert payer.file is not None
            for args in (
                (
                    "pay",
                    "--node",
                    node,
                    "--from",
                    str(payer.file),
                    "--to",
                    payee.address.hex(),
                    "--amount",
                    "1",
                ),
                ("balance", "--node", node, str(payer.file)),
                ("status", "--node", node),
            ):
                started = time.monotonic()
                proc = await trio.to_thread.run_sync(lambda args=args: cli(*args, check=False))
                took = time.monotonic() - started
                print(f"{args[0]}: exit {proc.returncode} in {took:.2f}s: {proc.stderr.strip()}")
                assert proc.returncode == 1, (args, proc.returncode, proc.stdout, proc.stderr)
                lines = proc.stderr.strip().splitlines()
                assert len(lines) == 1 and "blocked" in lines[0], (args, proc.stderr)
                assert payer.address.hex() in lines[0] and "seq 0" in lines[0], lines[0]
                assert took < 15, f"{args[0]} took {took:.1f}s: a blocked slot must be answered at once"
            # Safety held: neither order has a certificate, and another account still pays.
            with pytest.raises(SlotBlocked):
                await cluster.pay(payer, payee, 1, via="node-2")
            assert (await cluster.pay(payee, payer, 3, via="node-3")).settled
