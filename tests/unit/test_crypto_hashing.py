import hashlib

import pytest

from p2pnode.crypto import hash256


def test_matches_the_documented_encoding() -> None:
    expected = hashlib.sha256(b"\x03abc" + b"\x00\x00\x00\x02xy" + b"\x00\x00\x00\x00").digest()
    assert hash256(b"abc", b"xy", b"") == expected


def test_output_is_32_bytes() -> None:
    assert len(hash256(b"d")) == 32


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((b"d", b"ab", b"c"), (b"d", b"a", b"bc")),  # part boundaries move
        ((b"d", b"abc"), (b"d", b"ab", b"c")),  # number of parts
        ((b"d", b""), (b"d",)),  # an empty part is still a part
        ((b"dx", b"y"), (b"d", b"xy")),  # domain/part boundary
        ((b"d1", b"m"), (b"d2", b"m")),  # domain separation
    ],
)
def test_distinct_inputs_hash_differently(a: tuple[bytes, ...], b: tuple[bytes, ...]) -> None:
    assert hash256(*a) != hash256(*b)


@pytest.mark.parametrize("domain", [b"", b"x" * 256])
def test_bad_domain_length_is_rejected(domain: bytes) -> None:
    with pytest.raises(ValueError, match="domain"):
        hash256(domain, b"part")


def test_accepts_max_domain() -> None:
    assert hash256(b"x" * 255) != hash256(b"x" * 254)
