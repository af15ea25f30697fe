"""What core handlers ask the driver to do. The driver performs a handler's effects in order.

Ordering contract: a ``PersistLock`` or ``PersistApplied`` is made durable before any effect that
follows it is performed; the core only signs a vote after the driver reports the lock durable
(``on_lock_persisted``). The driver hands writes to the store in the order the core produced them
(across handlers too), and reports applied certificates durable in that order (``on_durable``):
clients see state only after its commit returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2pnode.wire.messages import Message, Order, ShieldedOrder
from p2pnode.wire.types import Digest, NodeId


@dataclass(frozen=True, slots=True)
class Send:
    peer: NodeId
    msg: Message


@dataclass(frozen=True, slots=True)
class Disconnect:
    peer: NodeId
    reason: str


@dataclass(frozen=True, slots=True)
class CloseClient:
    """Close the client connection the driver named ``source`` (it sent too many invalid proofs)."""

    source: object
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyProofs:
    """Verify these orders' proofs off the event loop, then call ``on_proofs_verified``."""

    orders: tuple[tuple[Digest, Order | ShieldedOrder], ...]


@dataclass(frozen=True, slots=True)
class PersistLock:
    """Durably record that this validator locked every key to ``digest``; then ``on_lock_persisted``.

    A key is (sender, seq) for an account, or (note commitment, -1) for a shielded input."""

    keys: tuple[tuple[bytes, int], ...]
    digest: Digest
    order: bytes


@dataclass(frozen=True, slots=True)
class PersistApplied:
    """Durably record an applied certificate, the accounts and notes it changed, and drop its locks."""

    key: tuple[bytes, int]  # where the certificate is filed: (sender, seq), or (first input, -1)
    cert_bytes: bytes
    digest: Digest
    accounts: tuple[tuple[bytes, int, int], ...]  # (address, balance, next_seq) after applying
    notes: tuple[tuple[bytes, bool], ...] = ()  # (commitment, spent) after applying
    locks: tuple[tuple[bytes, int], ...] = ()  # lock keys released
    # For the visible state once the commit returns (``Settlement.on_durable``): the apply index
    # (1, 2, ... in apply order) and the working state's figures right after this apply.
    index: int = 0
    root: bytes = b""
    applied: int = 0
    outputs: int = 0
    shielded: int = 0


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """The fate of an order a client submitted here: accepted into the protocol or refused."""

    digest: Digest
    accepted: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class Settled:
    """The certificate for ``digest`` is applied here and its commit returned (from ``on_durable``)."""

    digest: Digest


@dataclass(frozen=True, slots=True)
class Blocked:
    """These payments can never settle: their slot is blocked (wake their waiting clients)."""

    digests: tuple[Digest, ...]


@dataclass(frozen=True, slots=True)
class Emit:
    """A log event (the core never logs; the driver writes these lines)."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Effect = (
    Send
    | Disconnect
    | CloseClient
    | VerifyProofs
    | PersistLock
    | PersistApplied
    | OrderOutcome
    | Settled
    | Blocked
    | Emit
)
