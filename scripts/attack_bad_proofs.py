"""An attacker peer floods one validator of a local 4-validator cluster with well-formed invalid proofs.

Starts a real cluster (one process per node, 127.0.0.1), then runs honest payments through the victim
(node-1) twice: without an attack, and while an attacker sends N orders whose proofs are another
transfer's: with ``--via peer`` (the default) as a peer with a fresh Ed25519 key doing the real handshake
over TCP, gossiping them; with ``--via client`` through the victim's client port, submitting them one
after another and opening a new connection each time the victim cuts one off. Reports, per phase, the
victim's CPU seconds (its process and its verifier workers, psutil), the proofs it verified (its
``proof_verified`` log lines), and honest payment latency p50/p99. Stops every process it started.

    python scripts/attack_bad_proofs.py [--orders 2000] [--payments 40] [--via peer|client] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import psutil
import trio

from p2pnode.client import PaymentRefused
from p2pnode.core.payments import make_order
from p2pnode.crypto import NodeKey
from p2pnode.errors import RemoteError
from p2pnode.net.conn import FramedStream, handshake
from p2pnode.testing import open_local_cluster
from p2pnode.testing.local import LocalCluster
from p2pnode.tools.latency import percentile
from p2pnode.wire.messages import Gossip, Order
from p2pnode.wire.types import ChainId

VICTIM = "node-1"
ATTACK_ACCOUNT = 7


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live children (the proof verifier workers)."""
    total = 0.0
    proc = psutil.Process(pid)
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def verified(log: Path) -> int:
    with log.open() as f:
        return sum(1 for line in f if '"proof_verified"' in line)


def bad_orders(cluster: LocalCluster, n: int) -> list[Order]:
    acct = cluster.accounts[ATTACK_ACCOUNT]
    to = cluster.accounts[0].address
    stolen = make_order(acct.key, cluster.chain_id, to, 10**9, 0).proof
    out = []
    for amount in range(1, n + 1):
        good = make_order(acct.key, cluster.chain_id, to, amount, 0)
        out.append(Order(transfer=good.transfer, sender_key=good.sender_key, proof=stolen))
    return out


async def attack(host: str, port: int, chain_id: bytes, orders: list[Order], result: dict[str, Any]) -> None:
    """One attacker connection: fresh key, real handshake, then the flood; ends when the victim
    closes the connection or after 30 s."""
    stream = await trio.open_tcp_stream(host, port)
    conn = FramedStream(stream, 1 << 20)
    sent = 0
    start = trio.current_time()
    with trio.move_on_after(30):
        try:
            with trio.fail_after(5):
                await handshake(conn, NodeKey.generate(), ChainId(chain_id), 0, "full")
            for o in orders:
                await conn.send(Gossip(data=o.encode(), hops=1))
                sent += 1
            while True:
                await conn.receive()
        except (RemoteError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    result.update(sent=sent, connected_s=round(trio.current_time() - start, 3))
    await conn.aclose()


async def attack_client(cluster: LocalCluster, orders: list[Order], result: dict[str, Any]) -> None:
    """Submit ``orders`` through the victim's client port, one after another; when the victim cuts the
    connection off, open a new one (a client has no key to ban); stops after 30 s."""
    sent = accepted = refused = cut = 0
    start = trio.current_time()
    with trio.move_on_after(30):
        while sent < len(orders):
            try:
                async with cluster.client(VICTIM) as c:
                    while sent < len(orders):
                        o = orders[sent]
                        sent += 1
                        try:
                            await c.submit(o)
                            accepted += 1
                        except PaymentRefused:
                            refused += 1
            except (RemoteError, OSError):
                cut += 1
    result.update(
        sent=sent,
        accepted=accepted,
        refused=refused,
        connections_cut=cut,
        attack_s=round(trio.current_time() - start, 3),
    )


async def honest(cluster: LocalCluster, count: int) -> list[float]:
    times = []
    for i in range(count):
        start = trio.current_time()
        with trio.fail_after(60):
            await cluster.pay(i % 4, (i + 1) % 4, 1, via=VICTIM)
        times.append((trio.current_time() - start) * 1000)
    return sorted(times)


async def phase(
    cluster: LocalCluster, payments: int, orders: list[Order] | None, via: str = "peer"
) -> dict[str, Any]:
    pid = cluster.net.running()[VICTIM]
    log = cluster.log_files()[VICTIM]
    entry = cluster.cluster.node(VICTIM)
    cpu0, proofs0 = cpu_seconds(pid), verified(log)
    result: dict[str, Any] = {}
    async with trio.open_nursery() as n:
        if orders is not None:
            if via == "client":
                n.start_soon(attack_client, cluster, orders, result)
            else:
                n.start_soon(attack, entry.host, entry.port, cluster.chain_id, orders, result)
            await trio.sleep(0.05)  # the flood is on its way before the first honest payment
        times = await honest(cluster, payments)
    await trio.sleep(1.0)  # let queued work finish before reading the counters
    status = await cluster.status(VICTIM)
    result.update(
        victim_cpu_s=round(cpu_seconds(pid) - cpu0, 3),
        proofs_verified=verified(log) - proofs0,
        honest_p50_ms=round(percentile(times, 50), 1),
        honest_p99_ms=round(percentile(times, 99), 1),
        honest_max_ms=round(times[-1], 1),
        verify_budget=status.info.get("verify_budget"),
    )
    return result


async def run(n_orders: int, payments: int, via: str = "peer") -> dict[str, Any]:
    async with open_local_cluster(validators=4, accounts=8, faults=False) as cluster:
        assert isinstance(cluster, LocalCluster)
        orders = bad_orders(cluster, n_orders)
        baseline = await phase(cluster, payments, None)
        attacked = await phase(cluster, payments, orders, via)
        return {
            "orders": n_orders,
            "payments": payments,
            "via": via,
            "baseline": baseline,
            "attack": attacked,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--payments", type=int, default=40)
    ap.add_argument("--via", choices=("peer", "client"), default="peer", help="the attacker's way in")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    doc = trio.run(run, args.orders, args.payments, args.via)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for name in ("baseline", "attack"):
            print(name, json.dumps(doc[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
