"""Encrypted note memos (p2pnode.crypto.memo): round trip, wrong key, tampering, sizes."""

from __future__ import annotations

import os

import pytest

from p2pnode.crypto.memo import MAX_MEMO_LEN, MEMO_OVERHEAD, memo_public_key, open_, seal

PLAINTEXT = bytes(range(72))  # value (8) || blinding (32) || owner_pub (32)
AAD = b"\x01" * 32  # an output commitment


@pytest.fixture
def recipient() -> tuple[bytes, bytes]:
    private = os.urandom(32)
    return private, memo_public_key(private)


def test_round_trip(recipient: tuple[bytes, bytes]) -> None:
    private, public = recipient
    memo = seal(public, PLAINTEXT, AAD)
    assert len(memo) == len(PLAINTEXT) + MEMO_OVERHEAD == 120
    assert open_(private, memo, AAD) == PLAINTEXT


def test_each_memo_uses_a_fresh_key(recipient: tuple[bytes, bytes]) -> None:
    _, public = recipient
    a, b = seal(public, PLAINTEXT, AAD), seal(public, PLAINTEXT, AAD)
    assert a[:32] != b[:32] and a[32:] != b[32:]


def test_wrong_key_opens_nothing(recipient: tuple[bytes, bytes]) -> None:
    _, public = recipient
    memo = seal(public, PLAINTEXT, AAD)
    assert open_(os.urandom(32), memo, AAD) is None


@pytest.mark.parametrize("where", [0, 31, 32, 60, 119])
def test_tampered_memo_opens_nothing(recipient: tuple[bytes, bytes], where: int) -> None:
    private, public = recipient
    memo = bytearray(seal(public, PLAINTEXT, AAD))
    memo[where] ^= 0x01
    assert open_(private, bytes(memo), AAD) is None


def test_memo_is_bound_to_its_commitment(recipient: tuple[bytes, bytes]) -> None:
    private, public = recipient
    memo = seal(public, PLAINTEXT, AAD)
    assert open_(private, memo, b"\x02" * 32) is None


@pytest.mark.parametrize("memo", [b"", bytes(MEMO_OVERHEAD - 1), bytes(MAX_MEMO_LEN + 1), bytes(120)])
def test_malformed_memo_is_none_not_an_exception(recipient: tuple[bytes, bytes], memo: bytes) -> None:
    # bytes(120) starts with the all-zero X25519 point (low order): the shared secret would be zero.
    private, _ = recipient
    assert open_(private, memo, AAD) is None


def test_seal_refuses_bad_keys_and_oversize_plaintext(recipient: tuple[bytes, bytes]) -> None:
    _, public = recipient
    with pytest.raises(ValueError):
        seal(public[:31], PLAINTEXT, AAD)
    with pytest.raises(ValueError):
        seal(bytes(32), PLAINTEXT, AAD)  # low-order point
    with pytest.raises(ValueError):
        seal(public, bytes(MAX_MEMO_LEN - MEMO_OVERHEAD + 1), AAD)
    assert len(seal(public, bytes(MAX_MEMO_LEN - MEMO_OVERHEAD), AAD)) == MAX_MEMO_LEN
