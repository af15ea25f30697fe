"""Errors split by who is at fault.

- :class:`RemoteError`: a peer or client sent something wrong. The connection that carried it may be
  closed or penalized; the node itself carries on.
- :class:`LocalError`: our own configuration or a bug. It stops the operation (or the node) with a
  message that names the cause.

Ledger and validation errors carry their facts as attributes so that logs and client replies can
state them without string parsing.
"""

from __future__ import annotations

from pathlib import Path


class P2PNodeError(Exception):
    """Base of every error the project raises on purpose."""


class RemoteError(P2PNodeError):
    """The other side broke the protocol."""


class DecodeError(RemoteError):
    """Bytes that are not a valid frame or message."""


class FrameTooLarge(DecodeError):
    """A frame's length prefix is above the configured maximum (nothing was allocated)."""

    def __init__(self, length: int, maximum: int) -> None:
        super().__init__(f"frame length {length} exceeds maximum {maximum}")
        self.length = length
        self.maximum = maximum


class HandshakeError(RemoteError):
    """The peer failed the handshake; ``reason`` is logged on both sides."""


class LocalError(P2PNodeError):
    """Our configuration, files or code are at fault."""


class ConfigError(LocalError):
    """A configuration file is missing, malformed, or has an unknown or invalid key."""


class StorageError(LocalError):
    """The node's database could not be opened, read or written.

    ``cause`` names the class of failure in plain words: ``"disk full"`` (SQLITE_FULL), ``"I/O error"``
    (SQLITE_IOERR), ``"read-only"`` (SQLITE_READONLY) or ``"database error"`` (anything else);
    ``detail`` is SQLite's own message, ``code`` its extended error name (e.g. ``SQLITE_IOERR_WRITE``,
    or ``""`` if it gave none), ``path`` the database file and ``operation`` what failed
    (``"open"``, ``"load"`` or ``"commit"``). A failed commit wrote nothing: the transaction is rolled
    back, and everything committed before it is still there.
    """

    def __init__(self, cause: str, detail: str, *, path: Path, operation: str, code: str = "") -> None:
        self.cause = cause
        self.detail = detail
        self.path = path
        self.operation = operation
        self.code = code
        super().__init__(f"storage failed: {cause}: {detail} (data directory {path.parent}, at {operation})")


class Terminated(Exception):
    """SIGTERM stopped a command after its cleanup ran (the command line exits 143, as a shell
    reports it). Not a P2PNodeError: nothing went wrong."""
