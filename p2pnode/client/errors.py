"""The client's typed failures.

A :class:`Refused` operation was carried out and did not succeed, whatever refused it (a node, the
ledger, the wallet's own checks); the command line exits 1 on it. :class:`ConnectionLost` and
:class:`UnexpectedReply` are the node's fault (:class:`~p2pnode.errors.RemoteError`); a silent node is
:class:`NodeTimeout`. Each error is one line; ``facts`` are what a ``--json`` command adds to its
failure object.
"""

from __future__ import annotations

from typing import Any, ClassVar

from p2pnode.errors import LocalError, P2PNodeError, RemoteError
from p2pnode.wire.messages import Message
from p2pnode.wire.types import U64_MAX

__all__ = [
    "ConnectionLost",
    "InsufficientNotes",
    "NodeTimeout",
    "NotSettled",
    "PaymentRefused",
    "Refused",
    "SlotBlocked",
    "UnexpectedReply",
    "UsageError",
    "WalletBusy",
    "check_amount",
]


class Refused(P2PNodeError):
    """The operation was carried out and did not succeed (command line: exit 1)."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.facts = facts


class PaymentRefused(Refused):
    """The node refused the order; the message is the node's one-line reason."""


class NotSettled(Refused):
    """The order was accepted but did not settle before the caller's deadline."""


class SlotBlocked(Refused):
    """The account's next seq can never settle: conflicting orders split the validators' votes.
    ``facts``: ``blocked`` (the node's reason) and, when known, ``account``, ``seq``, ``orders``
    (digest hex -> voter id prefixes) and ``tx``."""


class WalletBusy(Refused):
    """Another command holds the account file's lock for longer than the caller's deadline."""


class InsufficientNotes(Refused):
    """The shielded wallet's notes cannot cover the amount."""


class NodeTimeout(P2PNodeError):
    """The node did not answer before the caller's deadline (exit 2: an unresponsive node)."""

    exit_code: ClassVar[int] = 2


class UsageError(LocalError):
    """An argument that was parsed but cannot be used (exit 2)."""


class ConnectionLost(RemoteError):
    """The connection to the node broke (reset, closed) before its reply arrived."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"connection to {node} lost: {reason}")
        self.node = node
        self.reason = reason


class UnexpectedReply(RemoteError):
    """The node answered a request with a message of the wrong type."""

    def __init__(self, node: str, request: Message, reply: Message) -> None:
        super().__init__(f"{node}: node answered {type(reply).__name__} to {type(request).__name__}")
        self.node = node
        self.reply = reply


def check_amount(value: int, option: str = "--amount") -> int:
    """``value`` if it is a positive u64 (what a transfer can carry), else :class:`UsageError`."""
    if value <= 0:
        raise UsageError(f"{option} must be positive, got {value}")
    if value > U64_MAX:
        raise UsageError(f"{option} {value} does not fit in u64 (at most {U64_MAX})")
    return value
