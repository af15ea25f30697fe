"""Test-only Byzantine peer behaviours (``[testing] enabled = true, byzantine = "<role>"``).

Each is a service the node is given (``NodeHooks.services``), started in the node's nursery; it uses
only the driver's public API (``node.peers``, ``node.core``, ``node.transport``, ``node.known``),
runs until the node stops, and is
bounded in rate so that a scenario measures the victims, not this node's own CPU. Roles:

- ``relay_invalid``  gossips orders with broken proofs: transfers of real, funded senders (keys learnt
                     from orders this node has seen) at their next seq, so every victim reaches the
                     expensive proof check; half of them copy a seen transfer exactly with a broken
                     proof (the same transfer digest as an honest payment).
- ``replay``         re-sends old gossip: applied certificates and seen orders, again and again.
- ``flood``          many valid-looking, invalid messages (orders of unknown senders, votes signed by
                     non-validators, certificates with garbage signatures), ~500 per second.
- ``malformed_frames`` opens raw connections to its peers' listen addresses and sends garbage: random
                     bytes, oversized length prefixes, undecodable msgpack, truncated frames.

Nothing here is reachable unless the node's config enables testing and names the role
(:func:`p2pnode.testing.faults.node_faults`).
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Awaitable, Callable

import trio

from p2pnode.config import parse_hostport
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.errors import P2PNodeError
from p2pnode.net.node import Node
from p2pnode.wire.messages import Certificate, Gossip, Order, Transfer, Vote, decode
from p2pnode.wire.types import Address, Amount, Digest, NodeId, Seq

RELAY_INVALID_RATE = 50  # orders per second
REPLAY_RATE = 100  # messages per second
FLOOD_RATE = 500  # messages per second
MALFORMED_RATE = 20  # connections per second
_TICK_S = 0.05
# Misbehaviour starts this long after the node is up, so that the cluster forms (and is seen ready)
# before honest peers ban the offender.
START_DELAY_S = 5.0


def peer_service(role: str) -> Callable[[Node], Awaitable[None]]:
    """The node service that plays ``role``; KeyError for a role that is not a peer role."""
    behaviour = _BEHAVIOURS[role]

    async def run(node: Node) -> None:
        rng = random.Random(os.urandom(8))
        await trio.sleep(START_DELAY_S)
        node.log.warning("byzantine_behaviour_started", role=role)
        await behaviour(node, rng)

    return run


def _per_tick(rate: int) -> int:
    return max(1, int(rate * _TICK_S))


def _broadcast(node: Node, data: bytes) -> None:
    for peer in node.peers.ids():
        node.peers.send(peer, Gossip(data=data, hops=1))


def seen_orders(node: Node) -> list[Order]:
    orders = [o for o in list(node.core.orders.values()) if isinstance(o, Order)]  # transparent only
    if len(orders) < 8:
        for raw in list(node.core.certs.values())[-32:]:
            try:
                orders.append(decode(raw, Certificate).order)
            except P2PNodeError:
                continue
    return orders


def _broken(proof: bytes, rng: random.Random) -> bytes:
    b = bytearray(proof)
    i = rng.randrange(len(b))
    b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def invalid_order(node: Node, rng: random.Random, seen: list[Order], own: SpendingKey) -> Order:
    """An order with a well-formed, broken proof. With orders seen: a real funded sender's, either a
    copy of a seen transfer or a fresh transfer at the sender's next seq (so every victim reaches the
    proof check); with none seen yet, an order of ``own``'s (unknown) account."""
    if not seen:
        t = Transfer(
            chain_id=node.genesis.chain_id,
            sender=Address(address_of(own.public)),
            recipient=Address(rng.randbytes(20)),
            amount=Amount(1),
            seq=Seq(0),
        )
        return Order(transfer=t, sender_key=own.public, proof=rng.randbytes(96))
    o = rng.choice(seen)
    t = o.transfer
    if rng.random() < 0.5:
        # The same statement as an honest payment, with a broken proof.
        return Order(transfer=t, sender_key=o.sender_key, proof=_broken(o.proof, rng))
    sender = Address(t.sender)
    fresh = Transfer(
        chain_id=t.chain_id,
        sender=sender,
        recipient=Address(rng.randbytes(20)),
        amount=Amount(rng.randrange(1, 1000)),
        seq=Seq(node.core.ledger.next_seq(sender)),
    )
    return Order(transfer=fresh, sender_key=o.sender_key, proof=_broken(o.proof, rng))


async def _relay_invalid(node: Node, rng: random.Random) -> None:
    own = SpendingKey.generate()
    while True:
        await trio.sleep(_TICK_S)
        seen = seen_orders(node)
        for _ in range(_per_tick(RELAY_INVALID_RATE)):
            _broadcast(node, invalid_order(node, rng, seen, own).encode())


async def _replay(node: Node, rng: random.Random) -> None:
    while True:
        await trio.sleep(_TICK_S)
        old = list(node.core.certs.values())[-256:] + [
            o.encode() for o in list(node.core.orders.values())[-64:]
        ]
        if not old:
            continue
        for _ in range(_per_tick(REPLAY_RATE)):
            _broadcast(node, rng.choice(old))


def _flood_message(node: Node, rng: random.Random, keys: list[SpendingKey], fake: NodeKey) -> bytes:
    kind = rng.randrange(3)
    chain = node.genesis.chain_id
    if kind == 0:  # an order from an account that does not exist
        k = rng.choice(keys)
        t = Transfer(
            chain_id=chain,
            sender=Address(address_of(k.public)),
            recipient=Address(rng.randbytes(20)),
            amount=Amount(rng.randrange(1, 10**6)),
            seq=Seq(rng.randrange(4)),
        )
        return Order(transfer=t, sender_key=k.public, proof=rng.randbytes(96)).encode()
    if kind == 1:  # a vote signed by a node outside the committee
        digest = Digest(rng.randbytes(32))
        return Vote(validator=NodeId(fake.public), digests=(digest,), signature=fake.sign(digest)).encode()
    k = rng.choice(keys)  # a certificate whose signatures are garbage
    t = Transfer(
        chain_id=chain,
        sender=Address(address_of(k.public)),
        recipient=Address(rng.randbytes(20)),
        amount=Amount(1),
        seq=Seq(0),
    )
    order = Order(transfer=t, sender_key=k.public, proof=rng.randbytes(96))
    sigs = tuple(sorted((bytes(v.node_id), rng.randbytes(64), 0, ()) for v in node.genesis.validators))
    return Certificate(order=order, signatures=sigs).encode()


async def _flood(node: Node, rng: random.Random) -> None:
    keys = [SpendingKey.generate() for _ in range(8)]
    fake = NodeKey.generate()
    while True:
        await trio.sleep(_TICK_S)
        for _ in range(_per_tick(FLOOD_RATE)):
            _broadcast(node, _flood_message(node, rng, keys, fake))


def _garbage(node: Node, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(1, 4096))
    if kind == 1:  # a length prefix far over any frame limit, then a little data
        return struct.pack(">I", 0xFFFFFFF0) + rng.randbytes(64)
    if kind == 2:  # a well-framed body that is not msgpack of any message
        body = b"\xc1" + rng.randbytes(rng.randrange(0, 512))
        return struct.pack(">I", len(body)) + body
    # a frame that promises more than it sends, then silence until the peer gives up on us
    return struct.pack(">I", 1000) + rng.randbytes(10)


async def _malformed_frames(node: Node, rng: random.Random) -> None:
    async def one(addr: str) -> None:
        host, port = parse_hostport(addr)
        with trio.move_on_after(2.0):
            try:
                stream = await node.transport.connect(host, port)
            except OSError:
                return
            try:
                await stream.send_all(_garbage(node, rng))
                await stream.receive_some(4096)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                await stream.aclose()

    async with trio.open_nursery() as nursery:
        while True:
            await trio.sleep(1 / MALFORMED_RATE)
            addrs = [p.addr for p in node.peers.values() if p.addr] or [a for a in node.known if a]
            if addrs:
                nursery.start_soon(one, rng.choice(addrs))


_BEHAVIOURS: dict[str, Callable[[Node, random.Random], Awaitable[None]]] = {
    "relay_invalid": _relay_invalid,
    "replay": _replay,
    "flood": _flood,
    "malformed_frames": _malformed_frames,
}

__all__ = ["invalid_order", "peer_service", "seen_orders"]
