"""Property-based fuzzing of the frame decoder, the message decoder and the core's message handler.

Inputs are arbitrary bytes and mutations of valid encodings of every peer message. Properties:

- ``FrameDecoder.feed`` and ``decode`` raise nothing but :class:`DecodeError`;
- ``NodeCore.on_message`` never raises, whatever decoded message arrives from a peer;
- garbage never changes the ledger: root and applied count stay at genesis (a certificate needs a
  quorum of committee signatures, and these inputs are built without the committee's keys).

The core is driven like the node driver would: proof verification requests are answered with the
real verifier and lock persistence is acknowledged, so that deep paths (voting) run too.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pnode.core.batches import batch_digest, root
from p2pnode.core.effects import PersistLock, VerifyProofs
from p2pnode.core.node import NodeCore
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import NodeKey, SpendingKey, address_of, schnorr_verify
from p2pnode.errors import DecodeError
from p2pnode.wire import codec
from p2pnode.wire.messages import (
    CertBatch,
    Certificate,
    CertRequest,
    Gossip,
    IHave,
    IWant,
    Message,
    Order,
    SyncHeads,
    SyncSummary,
    Vote,
    decode,
)
from p2pnode.wire.types import ChainId, Digest, NodeId

RNG = random.Random(5)
VALIDATORS = [NodeKey.from_seed(RNG.randbytes(32)) for _ in range(4)]
OUTSIDERS = [NodeKey.from_seed(RNG.randbytes(32)) for _ in range(4)]  # well-formed votes, wrong signers
ACCOUNTS = [SpendingKey.from_bytes((RNG.getrandbits(200) + 1).to_bytes(32, "big")) for _ in range(3)]
CHAIN = ChainId(bytes(range(32)))
BALANCES = {address_of(a.public): 1_000 for a in ACCOUNTS}
PEER = NodeId(bytes(32))


def _sig(key: NodeKey, digest: bytes) -> bytes:
    """A validator's signature over a batch of one."""
    return key.sign(batch_digest(CHAIN, root((digest,))))


def _seeds() -> list[bytes]:
    """Valid encodings of every message a peer may send (votes and certificates by outsiders)."""
    to = address_of(ACCOUNTS[1].public)
    orders = [make_order(ACCOUNTS[0], CHAIN, to, 5, 0), make_order(ACCOUNTS[0], CHAIN, to, 6, 1)]
    digest = transfer_digest(orders[0].transfer)
    votes = [
        Vote(validator=NodeId(k.public), digests=(digest,), signature=_sig(k, digest)) for k in OUTSIDERS
    ]
    fake_cert = Certificate(
        order=orders[0],
        signatures=tuple(sorted((v.validator, v.signature, 0, ()) for v in votes[:3])),
    )
    # Committee ids with signatures made by other keys: the shape of a quorum, none of the substance.
    forged = Certificate(
        order=orders[0],
        signatures=tuple(
            sorted(
                (k.public, _sig(o, digest), 0, ()) for k, o in zip(VALIDATORS, OUTSIDERS, strict=True)
            )
        ),
    )
    payloads: list[Message] = [*orders, *votes[:1], fake_cert, forged]
    msgs: list[Message] = [Gossip(data=p.encode(), hops=1) for p in payloads]
    msgs += [
        SyncSummary(root=bytes(32), applied=3),
        SyncHeads(heads=((address_of(ACCOUNTS[0].public), 2),), reply=True),
        CertRequest(items=((address_of(ACCOUNTS[0].public), 0),)),
        CertBatch(certs=(fake_cert.encode(), forged.encode())),
        IHave(ids=(bytes(32),)),
        IWant(ids=(bytes(32),)),
    ]
    return [m.encode() for m in msgs] + [p.encode() for p in payloads]


SEEDS = _seeds()


def new_core(validator: bool) -> NodeCore:
    key = VALIDATORS[0] if validator else NodeKey.from_seed(bytes([9]) * 32)
    return NodeCore(
        key=key,
        chain_id=CHAIN,
        validators=[k.public for k in VALIDATORS],
        balances=dict(BALANCES),
        rng=random.Random(1),
    )


def drive(core: NodeCore, effects: list[Any], budget: int = 64) -> None:
    """Perform the effects that feed back into the core, as the driver does (bounded)."""
    while effects and budget > 0:
        budget -= 1
        e = effects.pop(0)
        if isinstance(e, VerifyProofs):
            results = [
                (d, o, schnorr_verify(o.sender_key, d, o.proof), 1, len(e.orders)) for d, o in e.orders
            ]
            effects += core.on_proofs_verified(1.0, results)
        elif isinstance(e, PersistLock):
            effects += core.on_lock_persisted(1.0, Digest(e.digest))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[i:]
        elif op == "splice":
            data[i:] = draw(st.sampled_from(SEEDS))[i:]
    return bytes(data)


@st.composite
def structural(draw: st.DrawFn) -> bytes:
    """A valid message's msgpack tree with one leaf replaced by an arbitrary value."""
    obj = msgpack.unpackb(draw(st.sampled_from(SEEDS)), raw=False)
    leaf = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.binary(max_size=80),
        st.text(max_size=8),
        st.lists(st.integers(0, 300), max_size=3),
    )

    def replace(node: Any) -> Any:
        if isinstance(node, list) and node and draw(st.booleans()):
            i = draw(st.integers(0, len(node) - 1))
            node[i] = replace(node[i])
            return node
        return draw(leaf)

    return codec.pack(replace(obj))


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INPUTS = st.one_of(st.binary(max_size=300), mutated(), structural())


@FUZZ
@given(data=INPUTS)
def test_decode_raises_only_decode_error(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


@FUZZ
@given(chunks=st.lists(st.one_of(st.binary(max_size=64), mutated().map(codec.frame)), max_size=6))
def test_frame_decoder_raises_only_decode_error(chunks: list[bytes]) -> None:
    dec = codec.FrameDecoder(max_frame=4096)
    try:
        for chunk in chunks:
            for body in dec.feed(chunk):
                assert len(body) <= 4096
    except DecodeError:
        pass


@FUZZ
@given(batch=st.lists(INPUTS, min_size=1, max_size=6), validator=st.booleans())
def test_handler_never_raises_and_garbage_changes_nothing(batch: list[bytes], validator: bool) -> None:
    core = new_core(validator)
    root, applied = core.ledger.root(), core.ledger.applied_count()
    for data in batch:
        try:
            msg = decode(data)
        except DecodeError:
            continue
        drive(core, core.on_message(2.0, PEER, msg))
        drive(core, core.tick(3.0))
    assert core.ledger.root() == root
    assert core.ledger.applied_count() == applied
    assert not core.settled


def test_seeds_reach_deep_paths() -> None:
    """The seeds are well-formed: they decode, and a validator votes for the valid order."""
    core = new_core(validator=True)
    effects: list[Any] = []
    for data in SEEDS:
        msg = decode(data)
        effects = core.on_message(2.0, PEER, msg)
        drive(core, effects)
    assert core.validator is not None and core.validator.locks  # the genuine order got a lock
    assert core.ledger.applied_count() == 0


def test_broken_proof_copy_does_not_poison_the_genuine_certificate() -> None:
    core = new_core(validator=False)
    order = make_order(ACCOUNTS[0], CHAIN, address_of(ACCOUNTS[1].public), 5, 0)
    digest = transfer_digest(order.transfer)
    broken = Order(transfer=order.transfer, sender_key=order.sender_key, proof=bytes(96))
    drive(core, core.on_message(1.0, PEER, Gossip(data=broken.encode(), hops=1)))
    cert = Certificate(
        order=order,
        signatures=tuple(sorted((k.public, _sig(k, digest), 0, ()) for k in VALIDATORS[:3])),
    )
    drive(core, core.on_message(1.0, NodeId(bytes([1]) * 32), Gossip(data=cert.encode(), hops=1)))
    assert core.ledger.applied_count() == 1
