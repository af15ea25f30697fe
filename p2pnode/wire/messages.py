"""Every message on the wire, as frozen dataclasses with a unique tag.

Encoding: a message is the msgpack array ``[TAG, field1, field2, ...]`` in declared field order;
nested messages are nested arrays of the same form. Decoding is strict: exact array length, exact
types, exact byte lengths, bounded lists. Anything else is a :class:`DecodeError` (the sender's fault).

Stages are separate types (FastPay): ``Transfer`` (the statement) → ``Order`` (statement + proof) →
``Vote`` (one validator's signature over a batch of orders) → ``Certificate`` (order + a quorum of votes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from p2pnode.errors import DecodeError
from p2pnode.wire import codec
from p2pnode.wire.types import U64_MAX, Address, Amount, ChainId, Digest, NodeId, Seq

Spec = Callable[[Any], Any]


# -- field specs: each validates a decoded msgpack value and returns the typed value -------------------
def _bytes(exact: int | None = None, maximum: int | None = None) -> Spec:
    def check(v: Any) -> bytes:
        if not isinstance(v, bytes):
            raise DecodeError(f"expected bytes, got {type(v).__name__}")
        if exact is not None and len(v) != exact:
            raise DecodeError(f"expected {exact} bytes, got {len(v)}")
        if maximum is not None and len(v) > maximum:
            raise DecodeError(f"byte string of {len(v)} over limit {maximum}")
        return v

    return check


def _uint(bits: int) -> Spec:
    top = 2**bits - 1

    def check(v: Any) -> int:
        if type(v) is not int or not 0 <= v <= top:
            raise DecodeError(f"expected u{bits}, got {v!r:.40}")
        return v

    return check


def _str(maximum: int) -> Spec:
    def check(v: Any) -> str:
        if not isinstance(v, str) or len(v) > maximum:
            raise DecodeError(f"expected string of at most {maximum} chars")
        return v

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise DecodeError("expected bool")
    return v


def _list(item: Spec, maximum: int) -> Spec:
    def check(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list) or len(v) > maximum:
            raise DecodeError(f"expected list of at most {maximum} items")
        return tuple(item(x) for x in v)

    return check


def _tuple(*items: Spec) -> Spec:
    def check(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list) or len(v) != len(items):
            raise DecodeError(f"expected {len(items)}-tuple")
        return tuple(spec(x) for spec, x in zip(items, v, strict=True))

    return check


def _info(v: Any) -> dict[str, Any]:
    """A flat map of str -> scalar or list of scalars (status replies only; never signed)."""
    if not isinstance(v, dict) or len(v) > 256:
        raise DecodeError("expected a map")
    for key, val in v.items():
        if not isinstance(key, str):
            raise DecodeError("map keys must be strings")
        if not _plain(val, depth=0):
            raise DecodeError(f"unsupported value under {key!r}")
    return v


def _plain(v: Any, depth: int) -> bool:
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return True
    if depth >= 3:
        return False
    if isinstance(v, list):
        return all(_plain(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x, depth + 1) for k, x in v.items())
    return False


def _nested(cls: type[Message]) -> Spec:
    def check(v: Any) -> Message:
        decoded: Message = decode_obj(v, expect=cls)
        return decoded

    return check


B32, B20, B64, B96 = _bytes(32), _bytes(20), _bytes(64), _bytes(96)
U8, U16, U32, U64 = _uint(8), _uint(16), _uint(32), _uint(64)


# -- base ---------------------------------------------------------------------------------------------
class Message:
    """Base of all messages. Subclasses set ``TAG`` and ``SPEC`` (one spec per field, in order)."""

    __slots__ = ()
    TAG: ClassVar[int]
    SPEC: ClassVar[tuple[Spec, ...]]
    NAMES: ClassVar[tuple[str, ...]]

    def to_obj(self) -> list[Any]:
        out: list[Any] = [self.TAG]
        for name in self.NAMES:
            out.append(_to_obj(getattr(self, name)))
        return out

    def encode(self) -> bytes:
        return codec.pack(self.to_obj())


def _to_obj(v: Any) -> Any:
    if isinstance(v, Message):
        return v.to_obj()
    if isinstance(v, tuple):
        return [_to_obj(x) for x in v]
    return v


REGISTRY: dict[int, type[Message]] = {}
M = TypeVar("M", bound=Message)


def message(tag: int, *spec: Spec) -> Callable[[type[M]], type[M]]:
    def register(cls: type[M]) -> type[M]:
        if tag in REGISTRY:
            raise RuntimeError(f"duplicate message tag {tag}")
        cls.TAG = tag
        cls.SPEC = spec
        cls.NAMES = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        if len(spec) != len(cls.NAMES):
            raise RuntimeError(f"{cls.__name__}: spec/field count mismatch")
        REGISTRY[tag] = cls
        return cls

    return register


def decode_obj(obj: Any, expect: type[M] | None = None) -> Any:
    if not isinstance(obj, list) or not obj:
        raise DecodeError("message must be a non-empty array")
    tag = obj[0]
    cls = REGISTRY.get(tag) if type(tag) is int else None
    if cls is None:
        raise DecodeError(f"unknown message tag {tag!r:.20}")
    if expect is not None and cls is not expect:
        raise DecodeError(f"expected {expect.__name__}, got {cls.__name__}")
    if len(obj) != len(cls.SPEC) + 1:
        raise DecodeError(f"{cls.__name__}: expected {len(cls.SPEC)} fields, got {len(obj) - 1}")
    try:
        values = [spec(v) for spec, v in zip(cls.SPEC, obj[1:], strict=True)]
    except DecodeError as exc:
        raise DecodeError(f"{cls.__name__}: {exc}") from None
    return cls(**dict(zip(cls.NAMES, values, strict=True)))


def decode(data: bytes, expect: type[M] | None = None, *, max_len: int = codec.DEFAULT_MAX_FRAME) -> Any:
    """Decode one message from ``data``; raises :class:`DecodeError` on anything malformed."""
    return decode_obj(codec.unpack(data, max_len=max_len), expect)


# == peer protocol ===================================================================================


@message(1, U32, B32, B32, B32, U16, _str(16))
@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """First frame of a peer connection, sent by both sides."""

    version: int
    chain_id: ChainId
    node_id: NodeId
    nonce: bytes
    listen_port: int  # 0 = not listening (not dialable)
    role: str  # "validator" | "full"


@message(2, B64)
@dataclass(frozen=True, slots=True, kw_only=True)
class HelloAuth(Message):
    """Ed25519 signature over ``handshake_digest(peer_nonce, own node id, chain id)``."""

    signature: bytes


@message(3, _str(256))
@dataclass(frozen=True, slots=True, kw_only=True)
class Refuse(Message):
    """Sent just before closing a connection, with the reason."""

    reason: str


@message(4, U64)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    nonce: int


@message(5, U64)
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    nonce: int


@message(6)
@dataclass(frozen=True, slots=True, kw_only=True)
class GetPeers(Message):
    pass


PeerAddr = tuple[str, int, bytes]


@message(7, _list(_tuple(_str(64), U16, B32), 64))
@dataclass(frozen=True, slots=True, kw_only=True)
class Peers(Message):
    """Known dialable peers: (host, port, node id)."""

    peers: tuple[PeerAddr, ...]


@message(10, _bytes(maximum=1 << 20), U8)
@dataclass(frozen=True, slots=True, kw_only=True)
class Gossip(Message):
    """A gossiped payload (an encoded Order, Vote or Certificate). Its id hashes ``data`` only.

    ``hops`` counts the network hops the payload will have made on arrival: 1 straight from its
    origin, +1 per relay. It is outside the id, so relays do not change the message's identity."""

    data: bytes
    hops: int


@message(11, _list(B32, 1024))
@dataclass(frozen=True, slots=True, kw_only=True)
class IHave(Message):
    ids: tuple[bytes, ...]


@message(12, _list(B32, 1024))
@dataclass(frozen=True, slots=True, kw_only=True)
class IWant(Message):
    ids: tuple[bytes, ...]


@message(13, B32, U64)
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncSummary(Message):
    """Anti-entropy probe: the sender's state root and applied-certificate count."""

    root: bytes
    applied: int


@message(14, _list(_tuple(B20, U64), 1 << 16), _bool)
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncHeads(Message):
    """The sender's next seq for every account that has sent anything; ``reply`` asks for heads back."""

    heads: tuple[tuple[bytes, int], ...]
    reply: bool


@message(15, _list(_tuple(B20, U64), 256))
@dataclass(frozen=True, slots=True, kw_only=True)
class CertRequest(Message):
    """Ask for the certificates of these (sender, seq) pairs."""

    items: tuple[tuple[bytes, int], ...]


@message(16, _list(_bytes(maximum=1 << 16), 512))
@dataclass(frozen=True, slots=True, kw_only=True)
class CertBatch(Message):
    """Encoded certificates, answering a CertRequest or SyncHeads."""

    certs: tuple[bytes, ...]


@message(17, _list(B32, 1 << 16), _bool)
@dataclass(frozen=True, slots=True, kw_only=True)
class ShieldedHave(Message):
    """Anti-entropy for shielded certificates: the digests of every one the sender applied; the
    receiver answers with a CertBatch of those it has beyond them (``reply`` asks for ours back)."""

    digests: tuple[bytes, ...]
    reply: bool


@message(18, _list(_bytes(maximum=1 << 20), 1024))
@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle(Message):
    """Several encoded peer messages in one frame (a sender's queue coalesced). Each inner message
    is handled as if it had come in a frame of its own; a Bundle inside a Bundle is refused."""

    frames: tuple[bytes, ...]


# == payments =========================================================================================
@message(20, B32, B20, B20, U64, U64)
@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer(Message):
    """The statement of a payment. Its digest names the payment everywhere (logs, locks, votes)."""

    chain_id: ChainId
    sender: Address
    recipient: Address
    amount: Amount
    seq: Seq


@message(21, _nested(Transfer), B64, B96)
@dataclass(frozen=True, slots=True, kw_only=True)
class Order(Message):
    """A transfer with its proof: the sender's BN254 public key and a Schnorr proof over the digest."""

    transfer: Transfer
    sender_key: bytes
    proof: bytes


# A certificate's entry per signer: (validator, batch signature, leaf index, Merkle path to the root).
SIGNER = _tuple(B32, B64, U16, _list(B32, 10))
Signer = tuple[bytes, bytes, int, tuple[bytes, ...]]


@message(22, B32, _list(B32, 1024), B64)
@dataclass(frozen=True, slots=True, kw_only=True)
class Vote(Message):
    """One validator's votes for a batch of orders (those it durably locked in one commit): an
    Ed25519 signature over ``batch_digest(chain_id, Merkle root of digests)``
    (:mod:`p2pnode.core.batches`). A single order is a batch of one. Travels among validators only."""

    validator: NodeId
    digests: tuple[bytes, ...]
    signature: bytes


@message(23, _nested(Order), _list(SIGNER, 256))
@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate(Message):
    """An order with a quorum of signer entries (validator, signature, index, path), sorted by
    validator id: each proves that the validator signed a batch holding this order's digest."""

    order: Order
    signatures: tuple[Signer, ...]


# == shielded payments ================================================================================
SHIELD, SHIELDED_TRANSFER, UNSHIELD = 0, 1, 2


@message(24, B32, U8, _list(B32, 2), _list(B32, 2), U64, U64, B20, U64, _list(_bytes(maximum=256), 2))
@dataclass(frozen=True, slots=True, kw_only=True)
class ShieldedTransfer(Message):
    """The statement of a shielded payment (kind SHIELD, SHIELDED_TRANSFER or UNSHIELD).

    ``inputs`` are the commitments of the notes spent (public: which note is spent is visible, its
    value and owner are not); ``outputs`` the new notes' commitments (32-byte big-endian field
    elements), each with an encrypted memo for its recipient. ``public_in`` enters the pool from
    the transparent ``account`` (SHIELD, which also consumes that account's ``seq``);
    ``public_out`` leaves it to ``account`` (UNSHIELD). Unused fields are zero.
    """

    chain_id: ChainId
    kind: int
    inputs: tuple[bytes, ...]
    outputs: tuple[bytes, ...]
    public_in: Amount
    public_out: Amount
    account: Address
    seq: Seq
    memos: tuple[bytes, ...]


@message(25, _nested(ShieldedTransfer), _bytes(256), _bytes(maximum=64), _bytes(maximum=96))
@dataclass(frozen=True, slots=True, kw_only=True)
class ShieldedOrder(Message):
    """A shielded statement with its Groth16 proof (A || B || C uncompressed, 256 bytes) and, for
    SHIELD, the account's BN254 key and a Schnorr proof over the statement digest (else empty)."""

    tx: ShieldedTransfer
    proof: bytes
    account_key: bytes
    account_proof: bytes


@message(26, _nested(ShieldedOrder), _list(SIGNER, 256))
@dataclass(frozen=True, slots=True, kw_only=True)
class ShieldedCertificate(Message):
    """A shielded order with a quorum of signer entries, as in :class:`Certificate`."""

    order: ShieldedOrder
    signatures: tuple[Signer, ...]


# == client requests (one request, one reply, on a connection that did not send Hello) ==================
@message(40, _bytes(maximum=1 << 16))
@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRequest(Message):
    """``pad``: filler that makes the request at least half as large as its reply. A node answers an
    unauthenticated request with at most 2 bytes per byte received (anti-amplification, like QUIC's
    padded Initial packets); a request padded too little gets ``ErrorReply("pad N")``, N being the
    frame size in bytes it needs (``p2pnode.client`` pads and retries by itself)."""

    pad: bytes = b""


@message(41, _info)
@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReply(Message):
    info: dict[str, Any]


@message(42, _nested(Order))
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrder(Message):
    order: Order


@message(43, B32, _bool, _str(512))
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitReply(Message):
    """``accepted`` false carries the refusal as one readable line."""

    digest: Digest
    accepted: bool
    error: str


@message(44, B20)
@dataclass(frozen=True, slots=True, kw_only=True)
class GetAccount(Message):
    address: Address


@message(45, B20, U64, U64, _str(512))
@dataclass(frozen=True, slots=True, kw_only=True)
class AccountReply(Message):
    """Durable state only (see ``ClientService``). ``blocked`` is empty, or says why the account's
    next seq can never settle (conflicting orders split the votes; see ``slot_blocked``)."""

    address: Address
    balance: Amount
    next_seq: Seq
    blocked: str = ""


@message(46, B32, U32)
@dataclass(frozen=True, slots=True, kw_only=True)
class WaitSettled(Message):
    """Reply once the transfer's certificate is applied here, or after ``wait_ms`` with settled=false."""

    digest: Digest
    wait_ms: int


@message(47, B32, _bool, B32, U64, _str(512))
@dataclass(frozen=True, slots=True, kw_only=True)
class SettledReply(Message):
    """``settled`` only once the certificate's commit returned here; ``root`` and ``applied`` are of
    the durable state. ``blocked`` is non-empty (the reason) when the payment can never settle: its
    slot (sender, seq) is blocked by conflicting orders; the reply is then immediate."""

    digest: Digest
    settled: bool
    root: bytes
    applied: int
    blocked: str = ""


@message(50, _nested(ShieldedOrder))
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitShielded(Message):
    order: ShieldedOrder


@message(51, U32, U32)
@dataclass(frozen=True, slots=True, kw_only=True)
class GetNotes(Message):
    """Outputs of applied shielded certificates, in this node's apply order, from ``start``."""

    start: int
    limit: int


@message(52, _list(_tuple(B32, _bytes(maximum=256), _bool), 4096), U32, U32)
@dataclass(frozen=True, slots=True, kw_only=True)
class NotesReply(Message):
    """(commitment, memo, spent) per output; ``next`` is the index to ask for next; ``total`` outputs."""

    notes: tuple[tuple[bytes, bytes, bool], ...]
    next: int
    total: int


@message(48, _str(512))
@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply(Message):
    reason: str


# == canonical digests ==================================================================================
def u64(v: int) -> bytes:
    if not 0 <= v <= U64_MAX:
        raise ValueError("not a u64")
    return v.to_bytes(8, "big")


def all_message_types() -> Sequence[type[Message]]:
    return [REGISTRY[t] for t in sorted(REGISTRY)]
