import pytest

from p2pnode.crypto import NodeKey, ed25519_verify

# RFC 8032, section 7.1, TEST 2.
RFC_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
RFC_PUBLIC = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
RFC_MESSAGE = bytes.fromhex("72")
RFC_SIGNATURE = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


def test_rfc8032_vector() -> None:
    key = NodeKey.from_seed(RFC_SEED)
    assert key.seed == RFC_SEED
    assert key.public == RFC_PUBLIC
    assert key.sign(RFC_MESSAGE) == RFC_SIGNATURE
    assert ed25519_verify(RFC_PUBLIC, RFC_SIGNATURE, RFC_MESSAGE)


def test_sign_verify_round_trip_and_seed_round_trip() -> None:
    key = NodeKey.generate()
    sig = key.sign(b"vote")
    assert len(key.public) == 32 and len(key.seed) == 32 and len(sig) == 64
    assert ed25519_verify(key.public, sig, b"vote")
    assert NodeKey.from_seed(key.seed).public == key.public


def test_wrong_message_or_key_is_rejected() -> None:
    key = NodeKey.generate()
    sig = key.sign(b"vote")
    assert not ed25519_verify(key.public, sig, b"vote!")
    assert not ed25519_verify(NodeKey.generate().public, sig, b"vote")
    tampered = bytes([sig[0] ^ 1]) + sig[1:]
    assert not ed25519_verify(key.public, tampered, b"vote")


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_wrong_public_length_is_false(n: int) -> None:
    key = NodeKey.generate()
    assert not ed25519_verify(key.public[:1] * n, key.sign(b"m"), b"m")


@pytest.mark.parametrize("n", [0, 32, 63, 65])
def test_wrong_signature_length_is_false(n: int) -> None:
    key = NodeKey.generate()
    sig = (key.sign(b"m") * 2)[:n]
    assert not ed25519_verify(key.public, sig, b"m")


def test_garbage_types_are_false() -> None:
    key = NodeKey.generate()
    sig = key.sign(b"m")
    assert not ed25519_verify("not bytes", sig, b"m")  # type: ignore[arg-type]
    assert not ed25519_verify(key.public, None, b"m")  # type: ignore[arg-type]
    assert not ed25519_verify(key.public, sig, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, 16, 31, 33, 64])
def test_from_seed_rejects_wrong_length(n: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        NodeKey.from_seed(b"\x01" * n)


def test_key_is_immutable_and_repr_hides_seed() -> None:
    key = NodeKey.from_seed(RFC_SEED)
    with pytest.raises(AttributeError):
        key._seed = b"\x00" * 32
    assert RFC_SEED.hex() not in repr(key)
