"""The wire format: golden bytes for every message type, strict decoding of hostile input, framing.

Regenerate the golden file after a deliberate format change (and review the diff)::

    .venv/bin/python tests/unit/test_codec.py --regen
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pnode.errors import DecodeError, FrameTooLarge
from p2pnode.testing.faults.control import FaultControl  # test-only message: registers its tag
from p2pnode.wire import codec
from p2pnode.wire.codec import HEADER, FrameDecoder, frame
from p2pnode.wire.messages import (
    AccountReply,
    Bundle,
    CertBatch,
    Certificate,
    CertRequest,
    ErrorReply,
    GetAccount,
    GetNotes,
    GetPeers,
    Gossip,
    Hello,
    HelloAuth,
    IHave,
    IWant,
    Message,
    NotesReply,
    Order,
    Peers,
    Ping,
    Pong,
    Refuse,
    SettledReply,
    ShieldedCertificate,
    ShieldedHave,
    ShieldedOrder,
    ShieldedTransfer,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    SubmitReply,
    SubmitShielded,
    SyncHeads,
    SyncSummary,
    Transfer,
    Vote,
    WaitSettled,
    all_message_types,
    decode,
    decode_obj,
)
from p2pnode.wire.types import U64_MAX, Address, Amount, ChainId, Digest, NodeId, Seq

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "messages.json"


def b(n: int, fill: int) -> bytes:
    return bytes([fill]) * n


TRANSFER = Transfer(
    chain_id=ChainId(b(32, 0x01)),
    sender=Address(b(20, 0xA1)),
    recipient=Address(b(20, 0xB2)),
    amount=Amount(1_000),
    seq=Seq(7),
)
ORDER = Order(transfer=TRANSFER, sender_key=b(64, 0x5C), proof=b(96, 0x9F))
CERTIFICATE = Certificate(
    order=ORDER,
    signatures=(
        (b(32, 0x11), b(64, 0xE1), 0, ()),
        (b(32, 0x22), b(64, 0xE2), 5, (b(32, 0xA0), b(32, 0xA1), b(32, 0xA2))),
        (b(32, 0x33), b(64, 0xE3), 65535, tuple(b(32, i) for i in range(10))),
    ),
)

# One deterministic instance per message type. Values reach the edges of their ranges where cheap
# (u64 max, empty lists, empty strings, non-ASCII text) so that their encodings are pinned too.
SHIELDED_TX = ShieldedTransfer(
    chain_id=ChainId(b(32, 0xC4)),
    kind=1,
    inputs=(b(32, 0x11),),
    outputs=(b(32, 0x21), b(32, 0x22)),
    public_in=Amount(0),
    public_out=Amount(0),
    account=Address(bytes(20)),
    seq=Seq(0),
    memos=(b(120, 0x31), b(120, 0x32)),
)
SHIELDED_ORDER = ShieldedOrder(tx=SHIELDED_TX, proof=b(256, 0x41), account_key=b"", account_proof=b"")

EXAMPLES: list[Message] = [
    SHIELDED_TX,
    SHIELDED_ORDER,
    ShieldedCertificate(order=SHIELDED_ORDER, signatures=((b(32, 0x01), b(64, 0x02), 1, (b(32, 0x03),)),)),
    ShieldedHave(digests=(b(32, 0x51),), reply=True),
    SubmitShielded(order=SHIELDED_ORDER),
    GetNotes(start=3, limit=100),
    NotesReply(notes=((b(32, 0x61), b(100, 0x62), True),), next=4, total=9),
    Hello(
        version=2,
        chain_id=ChainId(b(32, 0x01)),
        node_id=NodeId(b(32, 0x02)),
        nonce=b(32, 0x03),
        listen_port=65535,
        role="validator",
    ),
    HelloAuth(signature=b(64, 0x04)),
    Refuse(reason="wrong chain ✗"),
    Ping(nonce=U64_MAX),
    Pong(nonce=0),
    GetPeers(),
    Peers(peers=(("127.0.0.1", 9000, b(32, 0x05)), ("node-b.example", 1, b(32, 0x06)))),
    Gossip(data=CERTIFICATE.encode(), hops=3),
    IHave(ids=(b(32, 0x07), b(32, 0x08))),
    IWant(ids=()),
    SyncSummary(root=b(32, 0x09), applied=123_456),
    SyncHeads(heads=((b(20, 0x0A), 1), (b(20, 0x0B), 2**32)), reply=True),
    CertRequest(items=((b(20, 0x0C), 0),)),
    CertBatch(certs=(CERTIFICATE.encode(), b"")),
    TRANSFER,
    ORDER,
    Vote(validator=NodeId(b(32, 0x0E)), digests=(b(32, 0x0D), b(32, 0x1D)), signature=b(64, 0x0F)),
    Bundle(frames=(Ping(nonce=1).encode(), b"")),
    CERTIFICATE,
    StatusRequest(pad=bytes(3)),
    StatusReply(
        info={
            "node": "n1",
            "applied": 42,
            "root": b(32, 0x10),
            "validator": True,
            "ratio": 0.5,
            "peers": ["a", "b", [1, None]],
            "nested": {"depth": 1},
            "missing": None,
        }
    ),
    SubmitOrder(order=ORDER),
    SubmitReply(digest=Digest(b(32, 0x12)), accepted=False, error="insufficient funds: balance 1, amount 2"),
    GetAccount(address=Address(b(20, 0x13))),
    AccountReply(
        address=Address(b(20, 0x14)), balance=Amount(U64_MAX), next_seq=Seq(0), blocked="seq 0 blocked"
    ),
    WaitSettled(digest=Digest(b(32, 0x15)), wait_ms=2**32 - 1),
    SettledReply(digest=Digest(b(32, 0x16)), settled=True, root=b(32, 0x17), applied=9),
    ErrorReply(reason=""),
    FaultControl(blocked=(bytes(range(32)),), delay_ms=250),
]
BY_NAME = {type(m).__name__: m for m in EXAMPLES}


def golden_table() -> dict[str, dict[str, Any]]:
    return {type(m).__name__: {"tag": m.TAG, "hex": m.encode().hex()} for m in EXAMPLES}


def load_golden() -> dict[str, dict[str, Any]]:
    return json.loads(GOLDEN.read_text())  # type: ignore[no-any-return]


# -- golden bytes and round trips ---------------------------------------------------------------------------
def test_every_message_type_has_exactly_one_example() -> None:
    have = [type(m) for m in EXAMPLES]
    assert len(have) == len(set(have)), "two examples of one type"
    missing = [cls.__name__ for cls in all_message_types() if cls not in have]
    assert not missing, f"message types without an example: {missing}"
    assert set(have) == set(all_message_types())


def test_golden_file_covers_exactly_the_message_types() -> None:
    assert set(load_golden()) == {cls.__name__ for cls in all_message_types()}


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_encoding_matches_golden_bytes(name: str) -> None:
    msg = BY_NAME[name]
    entry = load_golden()[name]
    assert entry["tag"] == msg.TAG
    assert msg.encode().hex() == entry["hex"], "wire format changed; regenerate only if that is intended"


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_round_trip(name: str) -> None:
    msg = BY_NAME[name]
    data = msg.encode()
    assert decode(data) == msg
    assert decode(data, expect=type(msg)) == msg
    assert decode(bytes.fromhex(load_golden()[name]["hex"])) == msg
    assert decode_obj(msg.to_obj()) == msg


def test_expecting_another_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="expected Order, got Transfer"):
        decode(TRANSFER.encode(), expect=Order)
    with pytest.raises(DecodeError):  # a nested field of the wrong type
        decode(
            codec.pack(
                [
                    Order.TAG,
                    Vote(validator=NodeId(b(32, 2)), digests=(b(32, 1),), signature=b(64, 3)).to_obj(),
                    b(64, 0),
                    b(96, 0),
                ]
            )
        )


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"tag": 20},
        [True, 1],  # a bool is not a tag
        [999],
        [20, b(32, 1), b(20, 2), b(20, 3), 1],  # a field missing
        [20, b(32, 1), b(20, 2), b(20, 3), 1, 2, 3],  # a field too many
        [20, b(31, 1), b(20, 2), b(20, 3), 1, 2],  # a byte string one short
        [20, b(32, 1), b(20, 2), b(20, 3), True, 2],  # a bool where a u64 goes
        [20, b(32, 1), b(20, 2), b(20, 3), -1, 2],  # negative
        [20, b(32, 1), b(20, 2), "x" * 20, 1, 2],  # str where bytes go
        [4, 2**64],  # above u64 (not packable, so only via decode_obj)
        [43, b(32, 1), 1, ""],  # an int where a bool goes
        [3, "x" * 257],  # a string over its limit
        [11, [b(32, 1)] * 1025],  # a list over its limit
        [41, {"deep": [[[[1]]]]}],  # status values nest at most three levels
        [41, {1: 2}],
    ],
)
def test_strict_decoding_refuses(obj: Any) -> None:
    with pytest.raises(DecodeError):
        decode_obj(obj)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(DecodeError):
        decode(Ping(nonce=1).encode() + b"\x00")


def test_size_limit_applies_to_byte_strings() -> None:
    data = Gossip(data=b(100, 0x01), hops=0).encode()
    assert decode(data, max_len=100).data == b(100, 0x01)
    with pytest.raises(DecodeError):
        decode(data, max_len=99)


# -- hostile input -------------------------------------------------------------------------------------------
def decodes_or_refuses(data: bytes) -> None:
    """``data`` decodes to a message that re-encodes stably, or raises DecodeError; nothing else."""
    try:
        msg = decode(data)
    except DecodeError:
        return
    assert isinstance(msg, Message)
    again = msg.encode()
    assert decode(again).encode() == again


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(BY_NAME)), st.binary(max_size=64))
def test_golden_prefix_with_arbitrary_tail(name: str, tail: bytes) -> None:
    data = BY_NAME[name].encode()
    decodes_or_refuses(data[: len(data) // 2] + tail)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), U64_MAX)
    | st.sampled_from([0, 1, 255, 65535, 2**32 - 1, U64_MAX])
    | st.binary(max_size=40)
    | st.sampled_from([b(20, 1), b(32, 2), b(64, 3), b(96, 4)])
    | st.text(max_size=20)
)
TAGS = st.sampled_from([cls.TAG for cls in all_message_types()])


def _values(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Plain lists, and lists headed by a real tag so that decoding gets past the first check.
    return st.lists(children, max_size=6) | st.builds(
        lambda tag, rest: [tag, *rest], TAGS, st.lists(children, max_size=6)
    )


MSGPACK_VALUES = st.recursive(SCALARS, _values, max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MSGPACK_VALUES)
def test_arbitrary_values_decode_or_raise_decode_error(value: Any) -> None:
    try:
        msg = decode_obj(value)
    except DecodeError:
        pass
    else:
        assert isinstance(msg, Message)
        assert decode(msg.encode()) == msg
    decodes_or_refuses(codec.pack(value))


@st.composite
def mutated_golden(draw: st.DrawFn) -> bytes:
    data = bytearray(bytes.fromhex(load_golden()[draw(st.sampled_from(sorted(BY_NAME)))]["hex"]))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "insert":
            data.insert(draw(st.integers(0, len(data))), draw(st.integers(0, 255)))
        elif data:
            i = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[i] ^= draw(st.integers(1, 255))
            else:
                del data[i]
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(mutated_golden())
def test_mutated_golden_encodings_decode_or_raise_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


# -- framing -------------------------------------------------------------------------------------------------
PAYLOADS = [Ping(nonce=1).encode(), b"", GetPeers().encode(), b"\x00" * 5, Pong(nonce=U64_MAX).encode()]
STREAM = b"".join(frame(p) for p in PAYLOADS)


def test_frame_prefixes_the_big_endian_length() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_stream_split_at_any_boundary_gives_the_same_frames(cut: int) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:]) == PAYLOADS
    assert decoder.buffered == 0


def test_stream_split_at_any_two_boundaries_and_byte_by_byte() -> None:
    n = len(STREAM)
    for i in range(n + 1):
        for j in range(i, n + 1):
            decoder = FrameDecoder()
            got = decoder.feed(STREAM[:i]) + decoder.feed(STREAM[i:j]) + decoder.feed(STREAM[j:])
            assert got == PAYLOADS, (i, j)
    decoder = FrameDecoder()
    got = [f for k in range(n) for f in decoder.feed(STREAM[k : k + 1])]
    assert got == PAYLOADS and decoder.buffered == 0


def test_frame_of_exactly_the_maximum_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=16)
    assert decoder.feed(frame(b"x" * 16)) == [b"x" * 16]


def test_oversized_header_raises_after_four_bytes_having_buffered_no_body() -> None:
    maximum = 16
    header = HEADER.pack(maximum + 1)
    decoder = FrameDecoder(max_frame=maximum)
    for byte in header[:-1]:
        assert decoder.feed(bytes([byte])) == []
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(header[-1:])
    assert (info.value.length, info.value.maximum) == (maximum + 1, maximum)
    assert isinstance(info.value, DecodeError)
    # Only the header itself is held; no body byte was read and no body buffer exists.
    assert decoder.buffered <= HEADER.size


def test_oversized_header_raises_before_its_body_arrives() -> None:
    decoder = FrameDecoder(max_frame=16)
    assert decoder.feed(frame(b"ok")) == [b"ok"]
    with pytest.raises(FrameTooLarge):
        decoder.feed(HEADER.pack(2**32 - 1))


def regenerate() -> None:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(golden_table(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(EXAMPLES)} messages to {GOLDEN}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit("usage: test_codec.py --regen")
    regenerate()


@given(n=st.integers(min_value=0, max_value=1024), kind=st.sampled_from(["have", "want"]))
@settings(max_examples=60, deadline=None)
def test_wire_size_of_ihave_and_iwant_is_their_encoded_size(n: int, kind: str) -> None:
    """``wire_size`` computes IHAVE/IWANT sizes without encoding them: the formula must match."""
    from p2pnode.core.settlement import FRAME_HEADER, wire_size
    from p2pnode.wire.messages import IHave, IWant

    ids = tuple(bytes([i % 256, i // 256]) * 16 for i in range(n))
    msg = IHave(ids=ids) if kind == "have" else IWant(ids=ids)
    assert wire_size(msg) == FRAME_HEADER + len(msg.encode())


@given(
    seqs=st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=300),
    kind=st.sampled_from(["heads", "request"]),
    reply=st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_wire_size_of_sync_heads_and_cert_requests_is_their_encoded_size(
    seqs: list[int], kind: str, reply: bool
) -> None:
    from p2pnode.core.settlement import FRAME_HEADER, wire_size
    from p2pnode.wire.messages import CertRequest, SyncHeads

    pairs = tuple((bytes([i % 256]) * 20, s) for i, s in enumerate(seqs))
    msg = SyncHeads(heads=pairs, reply=reply) if kind == "heads" else CertRequest(items=pairs[:256])
    assert wire_size(msg) == FRAME_HEADER + len(msg.encode())
