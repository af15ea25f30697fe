"""Ed25519 node keys: they name a node on the wire and sign validator votes.

A thin wrapper over ``cryptography`` that speaks raw bytes only, so the rest of the code base never sees a
``cryptography`` object.
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["NodeKey", "ed25519_verify"]

SEED_LEN = 32
PUBLIC_LEN = 32
SIGNATURE_LEN = 64


class NodeKey:
    """An Ed25519 private key. Immutable after construction."""

    __slots__ = ("_key", "_public", "_seed")

    _key: Ed25519PrivateKey
    _seed: bytes
    _public: bytes

    def __init__(self, key: Ed25519PrivateKey) -> None:
        object.__setattr__(self, "_key", key)
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        object.__setattr__(self, "_seed", seed)
        object.__setattr__(self, "_public", public)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("NodeKey is immutable")

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh key from the operating system's CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        """The key for a 32-byte RFC 8032 seed. Raises ``ValueError`` on any other length."""
        if len(seed) != SEED_LEN:
            raise ValueError(f"Ed25519 seed must be {SEED_LEN} bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @property
    def seed(self) -> bytes:
        """The 32-byte seed; treat as secret."""
        return self._seed

    @property
    def public(self) -> bytes:
        """The 32-byte public key."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """A 64-byte signature over ``message`` (deterministic, RFC 8032)."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        # Never print the seed.
        return f"NodeKey(public={self._public.hex()})"


@functools.lru_cache(maxsize=4096)
def _load_public(public: bytes) -> Ed25519PublicKey:
    # Committee and peer keys repeat on every vote; parsing them once saves a little on the hot path.
    return Ed25519PublicKey.from_public_bytes(public)


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """True iff ``signature`` is a valid signature of ``message`` under ``public``.

    Error handling: never raises on malformed input; wrong lengths, bad encodings and wrong types are
    simply ``False``, because all three arguments usually come from a peer.
    """
    if not isinstance(public, bytes | bytearray) or not isinstance(signature, bytes | bytearray):
        return False
    if not isinstance(message, bytes | bytearray | memoryview):
        return False
    if len(public) != PUBLIC_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        _load_public(bytes(public)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        return False
    return True
