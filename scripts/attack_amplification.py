"""Amplification: bytes a node sends per byte a stranger sends it, for each request anyone can make.

Starts a real 4-validator local cluster (one process per node, 127.0.0.1), makes some honest
payments so that the victim (node-1) holds history, then, for each request kind, connects with a
fresh Ed25519 key doing the real handshake (or as a plain client, for the client-port kinds), sends
a bounded number of that request, and reads whatever comes back for a while. Bytes are counted on the
attacker's socket (frames included), from just before the first request to the end of the read.
Reports bytes in (to the victim), bytes out (from it), their ratio, how many requests were answered,
and whether the victim penalized the attacker (a ``peer_penalized`` / ``peer_slow`` /
``connection_refused`` line naming its id in the victim's log, or the connection closed on it).

Exits 1 if any ratio exceeds ``--max-ratio`` (2.0: at most 2x bytes out per byte in). Bounded: at
most ``--count`` requests per kind, ``--read-s`` of reading each; stops every process it started.

    python scripts/attack_amplification.py [--count 200] [--read-s 1.5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from p2pnode.client.client import STATUS_PAD
from p2pnode.core.payments import message_id
from p2pnode.crypto import NodeKey
from p2pnode.errors import RemoteError
from p2pnode.net.conn import FramedStream, handshake
from p2pnode.testing import open_local_cluster
from p2pnode.testing.local import LocalCluster
from p2pnode.wire.messages import (
    CertRequest,
    GetAccount,
    GetPeers,
    Gossip,
    IWant,
    Message,
    Ping,
    StatusRequest,
    SyncHeads,
    SyncSummary,
    WaitSettled,
)
from p2pnode.wire.types import Address, ChainId, Digest

VICTIM = "node-1"
ERRORS = (RemoteError, OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel)


class Counting(trio.abc.Stream):
    """A stream that counts the bytes through it, each way."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sent = 0
        self.received = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)
        self.sent += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self.received += len(data)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


def short(b: bytes) -> str:
    return b.hex()[:16]


def penalized_in_log(log: Path, offset: int, node_id: bytes) -> str:
    """The first refusal naming ``node_id`` logged after ``offset`` (its event and reason), or ""."""
    sid = short(node_id)
    with log.open("rb") as f:
        f.seek(offset)
        for line in f:
            if sid.encode() not in line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") in ("peer_penalized", "peer_slow", "peer_evicted", "connection_refused"):
                return f"{ev['event']}: {ev.get('reason', '')}"
    return ""


async def peer_attack(
    cluster: LocalCluster, kind: str, make: Callable[[int, set[bytes]], Message], count: int, read_s: float
) -> dict[str, Any]:
    """One attacker peer: fresh key, real handshake, ``count`` requests made by ``make(i, ids)``
    (``ids``: gossip ids it received), then reads for ``read_s``."""
    entry = cluster.cluster.node(VICTIM)
    log = cluster.log_files()[VICTIM]
    offset = log.stat().st_size
    key = NodeKey.generate()
    stream = Counting(await trio.open_tcp_stream(entry.host, entry.port))
    conn = FramedStream(stream, 1 << 20)
    ids: set[bytes] = set()
    got: dict[str, int] = {}
    closed = ""

    async def reader() -> None:
        nonlocal closed
        try:
            while True:
                msg = await conn.receive()
                got[type(msg).__name__] = got.get(type(msg).__name__, 0) + 1
                if isinstance(msg, Gossip):
                    ids.add(message_id(msg.data))
        except ERRORS as exc:
            closed = str(exc) or type(exc).__name__

    result: dict[str, Any] = {"kind": kind, "port": "peer"}
    with trio.move_on_after(read_s + 30):
        async with trio.open_nursery() as n:
            with trio.fail_after(5):
                await handshake(conn, key, ChainId(cluster.chain_id), 0, "full")
            n.start_soon(reader)
            await trio.sleep(0.5)  # the connection's own chatter (sync probe, GetPeers) passes first
            if kind == "IWANT held ids":
                await cluster.pay(2, 3, 1, via="node-2")  # gossip this peer receives: ids it can name
                await trio.sleep(0.3)
            got.clear()
            in0, out0 = stream.sent, stream.received
            sent = 0
            try:
                for i in range(count):
                    await conn.send(make(i, ids))
                    sent += 1
            except ERRORS as exc:
                closed = closed or str(exc) or type(exc).__name__
            await trio.sleep(read_s)
            n.cancel_scope.cancel()
    await trio.sleep(0.2)  # the victim's log line
    bytes_in, bytes_out = stream.sent - in0, stream.received - out0
    with trio.move_on_after(1) as scope:
        scope.shield = True
        await conn.aclose()
    result.update(
        requests=sent,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        ratio=round(bytes_out / bytes_in, 3) if bytes_in else 0.0,
        replies=got,
        penalized=penalized_in_log(log, offset, key.public) or (f"closed: {closed}" if closed else ""),
    )
    return result


async def client_attack(
    cluster: LocalCluster, kind: str, make: Callable[[int], Message], count: int, read_s: float
) -> dict[str, Any]:
    """A client connection: ``count`` requests, each answered before the next (as the server does)."""
    entry = cluster.cluster.node(VICTIM)
    stream = Counting(await trio.open_tcp_stream(entry.host, entry.port))
    conn = FramedStream(stream, 1 << 20)
    sent = answered = 0
    closed = ""
    with trio.move_on_after(read_s + 30):
        try:
            for i in range(count):
                await conn.send(make(i))
                sent += 1
                with trio.fail_after(read_s):
                    await conn.receive()
                answered += 1
        except (*ERRORS, trio.TooSlowError) as exc:
            closed = str(exc) or type(exc).__name__
    with trio.move_on_after(1) as scope:
        scope.shield = True
        await conn.aclose()
    return {
        "kind": kind,
        "port": "client",
        "requests": sent,
        "bytes_in": stream.sent,
        "bytes_out": stream.received,
        "ratio": round(stream.received / stream.sent, 3) if stream.sent else 0.0,
        "replies": {"answered": answered},
        "penalized": f"closed: {closed}" if closed else "",
    }


async def run(count: int, read_s: float, payments: int) -> dict[str, Any]:
    async with open_local_cluster(validators=4, accounts=8, faults=False) as cluster:
        assert isinstance(cluster, LocalCluster)
        digests: list[bytes] = []
        for i in range(payments):
            with trio.fail_after(60):
                r = await cluster.pay(i % 4, (i + 1) % 4, 1, via=VICTIM)
            digests.append(r.tx)
        await trio.sleep(1.0)
        accounts = [Address(a.address) for a in cluster.accounts]
        every_at_zero = tuple((bytes(a), 0) for a in accounts)
        cert_items = tuple((bytes(accounts[i % 4]), s) for i in range(4) for s in range(payments // 4))
        settled = Digest(digests[0] if digests else b"\x00" * 32)
        peer_kinds: list[tuple[str, Callable[[int, set[bytes]], Message]]] = [
            ("Ping", lambda i, _: Ping(nonce=i + 1)),
            ("GetPeers", lambda i, _: GetPeers()),
            ("SyncHeads empty", lambda i, _: SyncHeads(heads=(), reply=True)),
            ("SyncHeads every account at 0", lambda i, _: SyncHeads(heads=every_at_zero, reply=True)),
            ("SyncSummary", lambda i, _: SyncSummary(root=bytes([i % 256]) * 32, applied=10**6)),
            ("IWANT held ids", lambda i, ids: IWant(ids=tuple(sorted(ids))[:64] or (b"\x00" * 32,))),
            ("CertRequest", lambda i, _: CertRequest(items=cert_items)),
        ]
        client_kinds: list[tuple[str, Callable[[int], Message]]] = [
            ("GetAccount", lambda i: GetAccount(address=accounts[i % len(accounts)])),
            ("Status (padded, as p2pnode.client sends it)", lambda i: StatusRequest(pad=bytes(STATUS_PAD))),
            ("Status unpadded (answered: pad N)", lambda i: StatusRequest()),
            ("WaitSettled", lambda i: WaitSettled(digest=settled, wait_ms=0)),
        ]
        rows = []
        for kind, make in peer_kinds:
            rows.append(await peer_attack(cluster, kind, make, count, read_s))
        for kind, make_c in client_kinds:
            rows.append(await client_attack(cluster, kind, make_c, min(count, 100), read_s))
        return {"count": count, "read_s": read_s, "history_payments": payments, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="requests per kind (client kinds: at most 100)")
    ap.add_argument("--read-s", type=float, default=1.5, help="seconds to read replies after sending")
    ap.add_argument("--payments", type=int, default=24, help="honest payments made first (history)")
    ap.add_argument("--max-ratio", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    doc = trio.run(run, args.count, args.read_s, args.payments)
    over = [r["kind"] for r in doc["rows"] if r["ratio"] > args.max_ratio]
    doc["over_limit"] = over
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"{'request':30} {'port':6} {'sent':>5} {'bytes in':>9} {'bytes out':>10} {'ratio':>8}  penalized"
        )
        for r in doc["rows"]:
            print(
                f"{r['kind']:30} {r['port']:6} {r['requests']:>5} {r['bytes_in']:>9} {r['bytes_out']:>10} "
                f"{r['ratio']:>8.3f}  {r['penalized'] or 'no'}"
            )
        print(f"over {args.max_ratio}x: {', '.join(over) or 'none'}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
