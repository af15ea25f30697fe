"""Encrypted memos for shielded notes: X25519 key agreement + ChaCha20-Poly1305.

A memo tells a note's recipient how to open it. Sealing to a recipient's X25519 public key ``P``:

* draw a fresh ephemeral key pair ``(e, E)``; ``shared = X25519(e, P)``;
* ``key = hash256("p2pnode/shielded/memo-key/v1", shared, E, P)`` (binding both public keys makes the
  key specific to this exchange and recipient);
* ``memo = E (32 bytes) || ChaCha20-Poly1305(key, nonce = 12 zero bytes, plaintext, aad)``.

The all-zero nonce is safe only because every key is used exactly once: each memo has a fresh ephemeral
key, so no (key, nonce) pair ever repeats. Reusing an ephemeral key would break this; :func:`seal` never
does. ``aad`` is authenticated, not encrypted: for notes it is the output commitment, so a memo cannot be
moved to another note.

A memo for a note carries ``value (8 bytes BE) || blinding (32) || owner_pub (32)``: 32 + 72 + 16 = 120
bytes, below the wire limit of 256.

Error handling: :func:`open_` never raises on what a peer sent (wrong length, wrong key, tampered bytes,
a low-order ephemeral key): it returns None. :func:`seal` and :func:`memo_public_key` raise
``ValueError`` on a malformed key (our caller's bug or a bad address typed by a user).
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2pnode.crypto.hashing import hash256

__all__ = ["MAX_MEMO_LEN", "MEMO_OVERHEAD", "memo_public_key", "open_", "seal"]

KEY_DOMAIN = b"p2pnode/shielded/memo-key/v1"
KEY_LEN = 32
MEMO_OVERHEAD = KEY_LEN + 16  # ephemeral public key + Poly1305 tag
MAX_MEMO_LEN = 256  # the wire limit of a memo in ShieldedTransfer
_NONCE = bytes(12)


def memo_public_key(private: bytes) -> bytes:
    """The 32-byte X25519 public key of a 32-byte private key. Raises ``ValueError`` on a bad length."""
    if len(private) != KEY_LEN:
        raise ValueError(f"X25519 private key must be {KEY_LEN} bytes")
    public = X25519PrivateKey.from_private_bytes(private).public_key()
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return hash256(KEY_DOMAIN, shared, eph_pub, recipient_pub)


def seal(recipient_pub: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` to ``recipient_pub`` (32-byte X25519), authenticating ``aad``.

    Returns ``ephemeral public key (32) || ciphertext and tag (len(plaintext) + 16)``. Raises
    ``ValueError`` if the key is malformed or of low order, or if the memo would exceed
    :data:`MAX_MEMO_LEN`.
    """
    if len(recipient_pub) != KEY_LEN:
        raise ValueError(f"X25519 public key must be {KEY_LEN} bytes")
    if len(plaintext) + MEMO_OVERHEAD > MAX_MEMO_LEN:
        raise ValueError(f"memo plaintext of {len(plaintext)} bytes exceeds {MAX_MEMO_LEN - MEMO_OVERHEAD}")
    eph = X25519PrivateKey.from_private_bytes(secrets.token_bytes(KEY_LEN))
    eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    # cryptography raises ValueError if the shared secret is all zero (a low-order recipient key).
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_pub))
    key = _key(shared, eph_pub, recipient_pub)
    return eph_pub + ChaCha20Poly1305(key).encrypt(_NONCE, plaintext, aad)


def open_(private: bytes, memo: bytes, aad: bytes) -> bytes | None:
    """Decrypt a memo sealed to the public key of ``private`` (32-byte X25519) with the same ``aad``.

    Returns the plaintext, or None if the memo is not for this key, was altered, or is malformed.
    Raises ``ValueError`` only for a malformed ``private`` (our own key).
    """
    if len(private) != KEY_LEN:
        raise ValueError(f"X25519 private key must be {KEY_LEN} bytes")
    if not MEMO_OVERHEAD <= len(memo) <= MAX_MEMO_LEN:
        return None
    sk = X25519PrivateKey.from_private_bytes(private)
    my_pub = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    eph_pub = memo[:KEY_LEN]
    try:
        shared = sk.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError:
        return None  # low-order ephemeral key: not a memo anyone sealed with seal()
    try:
        return ChaCha20Poly1305(_key(shared, eph_pub, my_pub)).decrypt(_NONCE, memo[KEY_LEN:], aad)
    except InvalidTag:
        return None
