"""Domain-separated hashing.

Every hash the protocol computes goes through :func:`hash256`, so that two different uses of SHA-256 can
never produce colliding inputs: the domain tag is length-prefixed and so is every part.
"""

from __future__ import annotations

import hashlib

__all__ = ["hash256"]

_MAX_PART = (1 << 32) - 1


def hash256(domain: bytes, *parts: bytes) -> bytes:
    """Return SHA-256 over ``len(domain) (1 byte) || domain || (len(part) (4 bytes BE) || part)*``.

    The encoding is injective: ``hash256(b"d", b"ab", b"c")`` and ``hash256(b"d", b"a", b"bc")`` hash
    different byte strings. Output is 32 bytes.

    Error handling: raises ``ValueError`` if the domain is empty or longer than 255 bytes, or a part is
    longer than 2**32 - 1 bytes. These are programming errors, never caused by peer input.
    """
    if not 0 < len(domain) <= 255:
        raise ValueError(f"hash domain must be 1..255 bytes, got {len(domain)}")
    h = hashlib.sha256()
    h.update(len(domain).to_bytes(1, "big"))
    h.update(domain)
    for part in parts:
        n = len(part)
        if n > _MAX_PART:
            raise ValueError(f"hash part too long: {n} bytes")
        h.update(n.to_bytes(4, "big"))
        h.update(part)
    return h.digest()
