"""A guided tour of a local cluster: start it, settle payments, refuse one, check convergence, read the logs.

    make demo                                  # or: .venv/bin/python scripts/demo.py [--dir DIR]

Starts four validators with sixteen funded accounts on free ports of 127.0.0.1 (in a fresh temporary
directory unless ``--dir`` names one), settles a stream of transparent payments from a few concurrent
payers through different nodes, shows a refused overspend, and checks that every node ends with the
same state root. It then runs the latency report over the nodes' logs and draws its figure.

Exit status: 0 when every node agrees on the state root; 1 when they disagree or a payment fails;
2 when the cluster could not be started. The cluster is always stopped before the script exits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pnode.cli.cluster import Cluster
from p2pnode.cli.status import query_status
from p2pnode.cli.wallet import PaymentRefused, load_account, pay
from p2pnode.crypto import address_of
from p2pnode.errors import P2PNodeError
from p2pnode.net.client import Client
from p2pnode.tools.latency import analyze, percentile, render_report, write_plot
from p2pnode.wire.messages import SettledReply, WaitSettled
from p2pnode.wire.types import Digest

VALIDATORS = 4
ACCOUNTS = 16
PAYERS = 4  # concurrent payers, each from its own account
PAYMENTS_PER_PAYER = 10
PAY_TIMEOUT_S = 20.0
CONVERGE_TIMEOUT_S = 20.0


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 72 - len(text)), flush=True)


@dataclass(frozen=True, slots=True)
class Settled:
    payer: int
    payee: int
    amount: int
    node: str
    seq: int
    ms: float


async def show_status(cluster: Cluster) -> None:
    for name, (host, port) in cluster.addresses().items():
        with trio.fail_after(5):
            info = await query_status(host, port)
        print(
            f"  {name}  {info['role']:<9}  {host}:{port}  peers {info['peer_count']}  "
            f"chain {info['chain_id'][:16]}  applied {info['applied']}"
        )


async def wait_applied(client: Client, digest: bytes, timeout: float) -> None:
    """Wait until the node behind ``client`` has applied ``digest``.

    ``pay`` settles at the node it was sent to and reads the payer's next seq from the node it is given;
    before a payer switches nodes, the new node must have caught up, or the next order would reuse a seq
    that is already taken."""
    with trio.fail_after(timeout):
        while True:
            reply = await client.call(WaitSettled(digest=Digest(digest), wait_ms=1000))
            assert isinstance(reply, SettledReply)
            if reply.settled:
                return


async def payment_stream(cluster: Cluster, chain_id: bytes) -> list[Settled]:
    """PAYERS concurrent payers, each sending PAYMENTS_PER_PAYER sequential payments; payment k of a payer
    goes through node (payer + k) mod N, so every node takes orders from clients."""
    accounts = [load_account(p) for p in cluster.accounts()]
    addresses = cluster.addresses()
    names = cluster.names
    done: list[Settled] = []

    async def payer(i: int) -> None:
        key = accounts[i]
        clients: dict[str, Client] = {}
        last: bytes | None = None
        try:
            for k in range(PAYMENTS_PER_PAYER):
                node = names[(i + k) % len(names)]
                if node not in clients:
                    clients[node] = await Client.connect(*addresses[node])
                if last is not None:
                    await wait_applied(clients[node], last, PAY_TIMEOUT_S)
                payee = PAYERS + (i * PAYMENTS_PER_PAYER + k) % (ACCOUNTS - PAYERS)
                to = address_of(accounts[payee].public)
                amount = 100 + 10 * i + k
                result = await pay(clients[node], key, chain_id, to, amount, PAY_TIMEOUT_S)
                last = result.digest
                entry = Settled(i, payee, amount, node, result.seq, result.seconds * 1000)
                done.append(entry)
                print(
                    f"  #{len(done):<3} account-{i:<2} -> account-{payee:<2}  {amount:>4} units  "
                    f"via {node}  seq {result.seq:<2}  settled in {entry.ms:6.1f} ms",
                    flush=True,
                )
        finally:
            for client in clients.values():
                await client.aclose()

    async with trio.open_nursery() as nursery:
        for i in range(PAYERS):
            nursery.start_soon(payer, i)
    return done


async def refused_payment(cluster: Cluster, chain_id: bytes) -> None:
    key = load_account(cluster.accounts()[ACCOUNTS - 1])
    to = address_of(load_account(cluster.accounts()[0]).public)
    name = cluster.names[0]
    async with await Client.connect(*cluster.addresses()[name]) as client:
        try:
            await pay(client, key, chain_id, to, 10**15, PAY_TIMEOUT_S)
        except PaymentRefused as exc:
            print(f"  account-{ACCOUNTS - 1} tries to send 10^15 units via {name}")
            print(f"  refused by {name}: {exc}")
            return
    raise SystemExit("demo: an overspend was accepted")


async def converge(cluster: Cluster, applied: int) -> dict[str, dict[str, object]]:
    """Poll every node until each has applied ``applied`` certificates (or the deadline passes)."""
    deadline = trio.current_time() + CONVERGE_TIMEOUT_S
    while True:
        infos: dict[str, dict[str, object]] = {}
        for name, (host, port) in cluster.addresses().items():
            with trio.fail_after(5):
                infos[name] = await query_status(host, port)
        if all(info["applied"] == applied for info in infos.values()) or trio.current_time() >= deadline:
            return infos
        await trio.sleep(0.05)


async def tour(cluster: Cluster) -> int:
    heading("1. Nodes: each is connected to the other three, on one chain")
    await show_status(cluster)
    chain_id = bytes.fromhex(cluster.testnet.chain_id)

    heading(f"2. Payments: {PAYERS} concurrent payers, {PAYERS * PAYMENTS_PER_PAYER} transparent payments")
    print("  (settled = the node the payment was sent to applied its certificate)")
    started = time.perf_counter()
    done = await payment_stream(cluster, chain_id)
    wall = time.perf_counter() - started
    ms = sorted(s.ms for s in done)
    print(
        f"  {len(done)} payments in {wall:.2f} s: settlement median {statistics.median(ms):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms, max {ms[-1]:.1f} ms"
    )

    heading("3. A refused payment: spending more than the balance")
    await refused_payment(cluster, chain_id)

    heading("4. Convergence: every node's state root and gossip counters")
    infos = await converge(cluster, len(done))
    for name, info in infos.items():
        g = info["gossip"]
        assert isinstance(g, dict)
        print(
            f"  {name}  applied {info['applied']:<3}  root {str(info['root'])[:16]}  gossip: "
            f"received {g.get('received')}, duplicate {g.get('duplicate')}, forwarded {g.get('forwarded')}, "
            f"published {g.get('published')}, invalid {g.get('invalid')}"
        )
    roots = {str(info["root"]) for info in infos.values()}
    if len(roots) != 1:
        print(f"  FAILED: the nodes disagree ({len(roots)} different state roots)")
        return 1
    print(f"  all {len(infos)} nodes agree: state root {roots.pop()}")
    return 0


def latency_report(cluster: Cluster) -> None:
    heading("6. Where the time went, from the nodes' logs (p2pnode latency)")
    logs = sorted((cluster.directory / "logs").glob("*.log"))
    shown = cluster.directory / "logs" / "*.log"
    print(f"  $ p2pnode latency {shown} --plot {cluster.directory / 'latency.png'}\n")
    report = analyze({str(p): p.read_text(encoding="utf-8", errors="replace").splitlines() for p in logs})
    print(render_report(report))
    print("\n  (the overspend refused in step 3 never settles, so the report lists it as not applied)")
    png = cluster.directory / "latency.png"
    try:
        write_plot(report, png)
    except ImportError:
        print("\n  (no figure: --plot needs matplotlib: pip install 'p2pnode[plot]')")
    else:
        print(f"\n  latency figure written to {png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="cluster directory (default: a fresh temporary one, kept)")
    args = parser.parse_args(argv)
    directory = args.dir if args.dir is not None else Path(tempfile.mkdtemp(prefix="p2pnode-demo-"))

    heading(f"0. Starting {VALIDATORS} validators with {ACCOUNTS} funded accounts in {directory}")
    cluster = Cluster(directory)
    try:
        started = time.perf_counter()
        try:
            cluster.up(validators=VALIDATORS, accounts=ACCOUNTS, timeout=30.0)
        except P2PNodeError as exc:
            print(f"demo: the cluster did not start: {exc}", file=sys.stderr)
            return 2
        print(f"  cluster ready in {time.perf_counter() - started:.1f} s")
        try:
            code = trio.run(tour, cluster)
        except* (P2PNodeError, trio.TooSlowError) as group:
            for failure in group.exceptions:
                print(f"demo: FAILED: {failure or type(failure).__name__}", file=sys.stderr)
            code = 1
    finally:
        heading("5. Stopping the cluster")
        stopped = cluster.down()
        print("  " + ", ".join(f"{s.name} {s.outcome}" for s in stopped))
    # The logs are read once the nodes have stopped: a node may answer a status request a moment
    # before it has written the matching log line, and a stopped node has written everything.
    latency_report(cluster)
    print(f"\nThe cluster directory stays behind for inspection: {directory}")
    print(f"  logs: {directory / 'logs'}   remove it with: rm -r {directory}")
    return code


if __name__ == "__main__":
    sys.exit(main())
