"""A guided tour of a local cluster: start it, settle payments, refuse one, move funds through the shielded
pool, check convergence, read the logs.

    make demo                                  # or: .venv/bin/python scripts/demo.py [--dir DIR]

Starts four validators with sixteen funded accounts on free ports of 127.0.0.1 (in a fresh temporary
directory unless ``--dir`` names one), settles a stream of transparent payments from a few concurrent
payers through different nodes and shows a refused overspend. Then the shielded pool: account-0 shields
funds into a note, pays account-1 from it with a shielded transfer, account-1 unshields part of that to
account-2's transparent account, and account-1's wallet scans the applied outputs to find its notes
(one prover for the whole section; each step prints its proof time and its settlement time). Finally
every node must hold the same state root, which covers the accounts, the notes and the spent set. After
the cluster is stopped, the latency report runs over the nodes' logs and draws its figure.

Exit status: 0 when every node agrees on the state root; 1 when they disagree or a payment fails;
2 when the cluster could not be started. The cluster is always stopped before the script exits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pnode.client import Client, PaymentRefused, Wallet, load_account, pay, status_reply
from p2pnode.client.shielded import choose, my_notes, open_prover
from p2pnode.core.shielded import shielded_digest
from p2pnode.crypto import address_of
from p2pnode.errors import P2PNodeError
from p2pnode.localnet import ClusterSpec, LocalNet, write_cluster
from p2pnode.tools.latency import analyze, percentile, render_report, write_plot
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    ShieldedOrder,
)
from p2pnode.wire.types import Address
from p2pnode.zk.notes import Note, ShieldedKeys, build_shield, build_transfer, build_unshield

VALIDATORS = 4
ACCOUNTS = 16
PAYERS = 4  # concurrent payers, each from its own account
PAYMENTS_PER_PAYER = 10
PAY_TIMEOUT_S = 20.0
CONVERGE_TIMEOUT_S = 20.0
SHIELD_AMOUNT = 5000  # account-0 -> its own note
ZPAY_AMOUNT = 1200  # account-0 -> account-1, shielded
UNSHIELD_AMOUNT = 500  # account-1 -> account-2's transparent account
SHIELDED_PAYMENTS = 3


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


def node_addresses(cluster: LocalNet) -> dict[str, tuple[str, int]]:
    return {n.name: (n.host, n.port) for n in cluster.cluster.nodes}


def account_files(cluster: LocalNet) -> list[Path]:
    return [a.path for a in cluster.cluster.accounts]


async def show_status(cluster: LocalNet) -> None:
    for name, (host, port) in node_addresses(cluster).items():
        with trio.fail_after(5):
            info = await cluster.status(name)
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
        await client.wait_settled(digest)


async def payment_stream(cluster: LocalNet, chain_id: bytes) -> list[Settled]:
    """PAYERS concurrent payers, each sending PAYMENTS_PER_PAYER sequential payments; payment k of a payer
    goes through node (payer + k) mod N, so every node takes orders from clients."""
    accounts = [load_account(p) for p in account_files(cluster)]
    addresses = node_addresses(cluster)
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
                with trio.fail_after(PAY_TIMEOUT_S):
                    result = await pay(clients[node], Wallet.from_key(key), to, amount)
                last = result.tx
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


async def refused_payment(cluster: LocalNet, chain_id: bytes) -> None:
    key = load_account(account_files(cluster)[ACCOUNTS - 1])
    to = address_of(load_account(account_files(cluster)[0]).public)
    name = cluster.names[0]
    async with await Client.connect(*node_addresses(cluster)[name]) as client:
        try:
            with trio.fail_after(PAY_TIMEOUT_S):
                await pay(client, Wallet.from_key(key), to, 10**15)
        except PaymentRefused as exc:
            print(f"  account-{ACCOUNTS - 1} tries to send 10^15 units via {name}")
            print(f"  refused by {name}: {exc}")
            return
    raise SystemExit("demo: an overspend was accepted")


async def balance(client: Client, address: bytes) -> int:
    reply = await client.call(GetAccount(address=Address(address)))
    assert isinstance(reply, AccountReply)
    return reply.balance


def short(commitment: bytes) -> str:
    return commitment.hex()[:16]


async def shielded_step(
    client: Client, build: Callable[..., ShieldedOrder], *args: object
) -> tuple[ShieldedOrder, bytes, float, float]:
    """Prove in a worker thread (the prover blocks), submit, and wait until the node applied it.

    Returns the order, its digest, the proof time and the settlement time (both in seconds)."""
    started = time.perf_counter()
    order = await trio.to_thread.run_sync(build, *args)
    prove_s = time.perf_counter() - started
    digest = shielded_digest(order.tx)
    started = time.perf_counter()
    with trio.fail_after(PAY_TIMEOUT_S):
        await client.submit(order)
        await client.wait_settled(digest)
    settle_s = time.perf_counter() - started
    return order, digest, prove_s, settle_s


def timing(prove_s: float, settle_s: float) -> str:
    return f"proof {prove_s * 1000:4.0f} ms, settlement {settle_s * 1000:6.1f} ms"


def listing(notes: list[tuple[Note, bool]]) -> list[tuple[int, bool]]:
    return sorted(((n.value, s) for n, s in notes), reverse=True)


async def shielded_tour(cluster: LocalNet, chain_id: bytes) -> int:
    """account-0 shields, pays account-1 in the shielded pool, account-1 unshields part of it to account-2,
    and account-1's wallet finds its notes. Returns 0, or 1 if a wallet sees other notes than expected.

    Each step goes through the next node. A wallet reads its notes (and a SHIELD its account's seq) from
    the node it talks to, so that node is first waited on until it has applied the previous step."""
    keyfiles = account_files(cluster)
    payer, payee, sink = (load_account(keyfiles[i]) for i in range(3))
    names = cluster.names

    def at(i: int) -> str:
        return names[i % len(names)]

    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(await Client.connect(*node_addresses(cluster)[n])) for n in names
        ]
        for c in clients:  # a node closes a connection whose first request is slow to come
            await status_reply(c)
        started = time.perf_counter()
        prover = stack.enter_context(await trio.to_thread.run_sync(open_prover))
        keys = [
            await trio.to_thread.run_sync(ShieldedKeys.from_spending_key, k.to_bytes(), prover)
            for k in (payer, payee)
        ]
        print(
            f"  wallet prover (one Node.js helper for the whole section) ready in "
            f"{time.perf_counter() - started:.2f} s"
        )
        zaddr = keys[1].address.hex()
        print(f"  account-1's shielded address (owner key || memo key, 64 bytes): {zaddr[:32]}...")
        print("  (proof: the wallet builds the Groth16 proof; settlement: submit until the node applied it)")

        # a. SHIELD: a transparent debit (public) into one note (value and owner hidden).
        node = clients[0]
        acct = await node.call(GetAccount(address=Address(payer.address)))
        assert isinstance(acct, AccountReply)
        order, shield_tx, prove_s, settle_s = await shielded_step(
            node, build_shield, prover, keys[0], payer, chain_id, acct.next_seq, SHIELD_AMOUNT
        )
        print(
            f"  shield    account-0 -> its own note       {SHIELD_AMOUNT:>5} units  via {names[0]}  "
            f"{timing(prove_s, settle_s)}"
        )
        print(
            f"            public: account-0 pays {SHIELD_AMOUNT} in (seq {acct.next_seq}); "
            f"new note {short(order.tx.outputs[0])}"
        )

        # b. Shielded transfer: spends account-0's note, pays account-1 and returns the change.
        node = clients[1 % len(clients)]
        await wait_applied(node, shield_tx, PAY_TIMEOUT_S)
        inputs = choose(await my_notes(node, prover, keys[0]), ZPAY_AMOUNT)
        order, zpay_tx, prove_s, settle_s = await shielded_step(
            node, build_transfer, prover, keys[0], chain_id, inputs, [(keys[1].address, ZPAY_AMOUNT)]
        )
        print(
            f"  zpay      account-0 -> account-1          {ZPAY_AMOUNT:>5} units  via {at(1)}  "
            f"{timing(prove_s, settle_s)}"
        )
        print(
            f"            public: spends note {short(order.tx.inputs[0])}; new notes "
            f"{', '.join(short(c) for c in order.tx.outputs)}; no amount, no owner"
        )

        # c. UNSHIELD: account-1 spends the note it received, paying a transparent account.
        node = clients[2 % len(clients)]
        await wait_applied(node, zpay_tx, PAY_TIMEOUT_S)
        before = await balance(node, sink.address)
        inputs = choose(await my_notes(node, prover, keys[1]), UNSHIELD_AMOUNT)
        order, unshield_tx, prove_s, settle_s = await shielded_step(
            node, build_unshield, prover, keys[1], chain_id, inputs, sink.address, UNSHIELD_AMOUNT
        )
        after = await balance(node, sink.address)
        print(
            f"  unshield  account-1 -> account-2 (transparent) {UNSHIELD_AMOUNT:>3} units  "
            f"via {at(2)}  {timing(prove_s, settle_s)}"
        )
        print(
            f"            public: spends note {short(order.tx.inputs[0])}; {UNSHIELD_AMOUNT} out to account-2"
            f" (balance {before} -> {after}); change note {short(order.tx.outputs[0])}"
        )

        # d. The recipient's wallet finds its notes by opening the memos of every applied output.
        node = clients[3 % len(clients)]
        await wait_applied(node, unshield_tx, PAY_TIMEOUT_S)
        started = time.perf_counter()
        outputs = await node.outputs()
        mine = await my_notes(node, prover, keys[1])
        scan_ms = (time.perf_counter() - started) * 1000
        print(
            f"\n  account-1's notes (p2pnode notes): {len(outputs)} applied outputs at {at(3)} "
            f"scanned in {scan_ms:.0f} ms; the memos sealed to its key open:"
        )
        for note, spent in mine:
            state = "spent" if spent else "unspent"
            print(f"    note {short(note.commitment_bytes)}  value {note.value:>6}  {state}")
        unspent = sum(n.value for n, s in mine if not s)
        print(f"    {len(mine)} notes, unspent total {unspent}")
        theirs = await my_notes(node, prover, keys[0])
        print(
            "  account-0's notes: "
            + ", ".join(f"{v} {'spent' if s else 'unspent'}" for v, s in listing(theirs))
        )

    change = ZPAY_AMOUNT - UNSHIELD_AMOUNT
    expected = {
        "account-1": (listing(mine), [(ZPAY_AMOUNT, True), (change, False)]),
        "account-0": (listing(theirs), [(SHIELD_AMOUNT, True), (SHIELD_AMOUNT - ZPAY_AMOUNT, False)]),
    }
    for who, (got, want) in expected.items():
        if got != want:
            print(f"  FAILED: {who}'s wallet sees notes {got}, expected {want}")
            return 1
    if after - before != UNSHIELD_AMOUNT:
        print(f"  FAILED: account-2's balance went from {before} to {after}")
        return 1
    return 0


async def converge(cluster: LocalNet, applied: int) -> dict[str, dict[str, object]]:
    """Poll every node until each has applied ``applied`` certificates (or the deadline passes)."""
    deadline = trio.current_time() + CONVERGE_TIMEOUT_S
    while True:
        infos: dict[str, dict[str, object]] = {}
        for name in cluster.names:
            with trio.fail_after(5):
                infos[name] = await cluster.status(name)
        if all(info["applied"] == applied for info in infos.values()) or trio.current_time() >= deadline:
            return infos
        await trio.sleep(0.05)


async def tour(cluster: LocalNet) -> int:
    heading("1. Nodes: each is connected to the other three, on one chain")
    await show_status(cluster)
    chain_id = cluster.cluster.chain_id

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

    heading("4. Shielded payments: shield, pay in the pool, unshield, find the notes")
    # A SHIELD consumes account-0's next seq: every node first applies the transparent payments.
    await converge(cluster, len(done))
    if await shielded_tour(cluster, chain_id) != 0:
        return 1

    heading("5. Convergence: state roots (they cover accounts, notes and spent notes), gossip")
    infos = await converge(cluster, len(done) + SHIELDED_PAYMENTS)
    for name, info in infos.items():
        g = info["gossip"]
        assert isinstance(g, dict)
        print(
            f"  {name}  applied {info['applied']:<3}  notes {info.get('notes')}  "
            f"root {str(info['root'])[:16]}  gossip: "
            f"received {g.get('received')}, duplicate {g.get('duplicate')}, forwarded {g.get('forwarded')}, "
            f"published {g.get('published')}, invalid {g.get('invalid')}"
        )
    roots = {str(info["root"]) for info in infos.values()}
    if len(roots) != 1:
        print(f"  FAILED: the nodes disagree ({len(roots)} different state roots)")
        return 1
    print(f"  all {len(infos)} nodes agree: state root {roots.pop()}")
    return 0


def latency_report(cluster: LocalNet) -> None:
    heading("7. Where the time went, from the nodes' logs (p2pnode latency)")
    logs = sorted((cluster.directory / "logs").glob("*.log"))
    shown = cluster.directory / "logs" / "*.log"
    print(f"  $ p2pnode latency {shown} --plot {cluster.directory / 'latency.png'}\n")
    report = analyze({str(p): p.read_text(encoding="utf-8", errors="replace").splitlines() for p in logs})
    print(render_report(report))
    print(
        f"\n  (the report covers the {SHIELDED_PAYMENTS} shielded payments of step 4 too; the overspend"
        " refused in step 3 never settles, so it is listed as not applied)"
    )
    png = cluster.directory / "latency.png"
    try:
        write_plot(report, png)
    except ImportError:
        print("\n  (no figure: --plot needs matplotlib: pip install 'p2pnode[plot]')")
    else:
        print(f"\n  latency figure written to {png}")


async def wait_ready(cluster: LocalNet) -> None:
    with trio.fail_after(30):
        await cluster.wait_ready()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="cluster directory (default: a fresh temporary one, kept)")
    args = parser.parse_args(argv)
    directory = args.dir if args.dir is not None else Path(tempfile.mkdtemp(prefix="p2pnode-demo-"))

    heading(f"0. Starting {VALIDATORS} validators with {ACCOUNTS} funded accounts in {directory}")
    try:
        spec = ClusterSpec(validators=VALIDATORS, accounts=ACCOUNTS)
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        cluster = LocalNet(write_cluster(spec, directory, log=log))
    except P2PNodeError as exc:
        print(f"demo: the cluster could not be written: {exc}", file=sys.stderr)
        return 2
    try:
        started = time.perf_counter()
        try:
            cluster.start()
            trio.run(wait_ready, cluster)
        except (P2PNodeError, trio.TooSlowError) as exc:
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
        heading("6. Stopping the cluster")
        stopped = cluster.stop()
        print("  " + ", ".join(f"{s.name} {s.outcome}" for s in stopped))
    # The logs are read once the nodes have stopped: a node may answer a status request a moment
    # before it has written the matching log line, and a stopped node has written everything.
    latency_report(cluster)
    print(f"\nThe cluster directory stays behind for inspection: {directory}")
    print(f"  logs: {directory / 'logs'}   remove it with: rm -r {directory}")
    return code


if __name__ == "__main__":
    sys.exit(main())
