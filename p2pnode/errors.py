"""Errors split by who is at fault.

- :class:`RemoteError`: a peer or client sent something wrong. The connection that carried it may be
  closed or penalized; the node itself carries on.
- :class:`LocalError`: our own configuration or a bug. It stops the operation (or the node) with a
  message that names the cause.

Ledger and validation errors carry their facts as attributes so that logs and client replies can
state them without string parsing.
"""

from __future__ import annotations


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
