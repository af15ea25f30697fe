"""Measure a slow-reader attack on a real 4-validator cluster: a peer that never reads.

Starts a 4-validator cluster of ``p2pnode run`` processes on 127.0.0.1 (no ``[testing]`` hooks) and
pays PAYMENTS payments through the victim (node-1) twice: once undisturbed, once while attackers
connect to it. Each attacker is a TCP connection with a tiny receive buffer that does the real
handshake with a fresh node key, then never reads: it sends GetPeers requests (each asks for a Peers
reply) while it also receives the cluster's gossip of the payments. A disconnected attacker comes
back with another fresh key, for the whole attack phase. Reports the victim's RSS growth (psutil),
honest payment latency in both phases, and the victim's counters (peers_slow, send_dropped).

    python scripts/attack_slow_reader.py [--payments 30] [--attack-s 30] [--attackers 4] [--json]
                                         [--unbounded]

``--unbounded`` runs the same attack with the byte budget and slow-peer timeout configured out of
the way (``peers.send_queue_bytes`` 1 GiB, ``peers.write_timeout_s`` 3600: only the 4,096-frame
queue bound remains, as before they existed), for comparison. Every process started is stopped, also
on failure or Ctrl-C. Exit 0 when every honest payment settled, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import psutil
import trio

from p2pnode.crypto import NodeKey
from p2pnode.net.conn import PEER_ERRORS, FramedStream, handshake
from p2pnode.testing import open_local_cluster
from p2pnode.testing.faults.attackers import connect_small_buffer
from p2pnode.wire import codec
from p2pnode.wire.messages import GetPeers
from p2pnode.wire.types import ChainId

VICTIM = 1
BATCH = 2000  # GetPeers requests per write (5 bytes each)
SAMPLE_S = 0.2


async def attacker(host: str, port: int, chain_id: ChainId, until: float, stats: dict[str, int]) -> None:
    """Connect, handshake with a fresh key, send requests without ever reading; again when cut."""
    flood = codec.frame(GetPeers().encode()) * BATCH
    while trio.current_time() < until:
        try:
            stream = await connect_small_buffer(host, port)
        except OSError:
            await trio.sleep(0.5)
            continue
        conn = FramedStream(stream, 1 << 20)
        try:
            with trio.fail_after(10):
                await handshake(conn, NodeKey.generate(), chain_id, 0, "full")
            stats["handshakes"] += 1
            with trio.move_on_at(until):
                while True:
                    await stream.send_all(flood)
                    stats["requests"] += BATCH
                    await trio.sleep(0.01)
        except (trio.TooSlowError, *PEER_ERRORS):
            stats["cut"] += 1
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()


async def sample_rss(proc: psutil.Process, out: list[int]) -> None:
    while True:
        out.append(proc.memory_info().rss)
        await trio.sleep(SAMPLE_S)


async def pay_phase(cluster: Any, payments: int, offset: int) -> tuple[list[float], int]:
    """PAYMENTS payments through the victim, sequential, rotating over accounts 0..3 -> 4..7."""
    latencies: list[float] = []
    failed = 0
    for i in range(payments):
        k = (offset + i) % 4
        try:
            with trio.fail_after(30):
                receipt = await cluster.pay(k, 4 + k, 1, via=VICTIM)
            latencies.append(receipt.seconds)
        except Exception as exc:  # noqa: BLE001 - a measurement: any failure is counted and reported
            print(f"payment {i} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
    return latencies, failed


def summary(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {}
    s = sorted(lat)
    return {
        "median_ms": round(statistics.median(s) * 1000, 1),
        "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))] * 1000, 1),
        "max_ms": round(s[-1] * 1000, 1),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, dict[str, Any]] = {}
    if args.unbounded:
        config["peers"] = {"send_queue_bytes": 1 << 30, "write_timeout_s": 3600.0}
    async with open_local_cluster(validators=4, accounts=8, faults=False, config=config) as cluster:
        victim = cluster.node(VICTIM)
        entry = cluster.cluster.node(victim.name)
        status = await cluster.status(victim)
        proc = psutil.Process(status.pid)
        rss: list[int] = []
        await pay_phase(cluster, 4, 0)  # warm up (connections, caches)
        base_rss = proc.memory_info().rss
        quiet, failed_quiet = await pay_phase(cluster, args.payments, 0)
        quiet_rss = proc.memory_info().rss
        stats = {"handshakes": 0, "requests": 0, "cut": 0}
        async with trio.open_nursery() as n:
            n.start_soon(sample_rss, proc, rss)
            until = trio.current_time() + args.attack_s
            for _ in range(args.attackers):
                n.start_soon(attacker, entry.host, entry.port, ChainId(cluster.chain_id), until, stats)
            await trio.sleep(2)  # let the attackers' queues fill before the honest payments start
            attacked, failed_attacked = await pay_phase(cluster, args.payments, 1)
            await trio.sleep_until(until)
            await trio.sleep(1)
            n.cancel_scope.cancel()
        after = await cluster.status(victim)
        counters = dict(after.counters)
        return {
            "unbounded": args.unbounded,
            "payments_per_phase": args.payments,
            "attackers": args.attackers,
            "attack_s": args.attack_s,
            "attack": stats,
            "rss_mb": {
                "before": round(base_rss / 1e6, 1),
                "after_quiet_phase": round(quiet_rss / 1e6, 1),
                "max_during_attack": round(max(rss) / 1e6, 1),
                "growth_during_attack": round((max(rss) - quiet_rss) / 1e6, 1),
            },
            "latency_quiet": summary(quiet),
            "latency_attacked": summary(attacked),
            "failed": {"quiet": failed_quiet, "attacked": failed_attacked},
            "victim_counters": {k: counters.get(k) for k in ("peers_slow", "send_dropped", "clients")},
            "victim_peers_after": after.peer_count,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payments", type=int, default=30, help="honest payments per phase (1..1000)")
    ap.add_argument("--attack-s", type=float, default=30.0, help="attack phase length, seconds (1..600)")
    ap.add_argument("--attackers", type=int, default=4, help="concurrent attacking connections (1..64)")
    ap.add_argument("--unbounded", action="store_true", help="configure the byte budget out of the way")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not (1 <= args.payments <= 1000 and 1 <= args.attack_s <= 600 and 1 <= args.attackers <= 64):
        ap.error("--payments 1..1000, --attack-s 1..600, --attackers 1..64")
    report = trio.run(measure, args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0 if report["failed"] == {"quiet": 0, "attacked": 0} else 1


if __name__ == "__main__":
    sys.exit(main())
