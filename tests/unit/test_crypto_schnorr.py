import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.crypto import (
    CURVE_ORDER,
    FIELD_MODULUS,
    SpendingKey,
    address_of,
    bn254,
    g1_decode,
    g1_encode,
    hash256,
    schnorr_batch_verify,
    schnorr_verify,
)


@pytest.fixture(scope="module")
def key() -> SpendingKey:
    return SpendingKey.from_bytes((123456789).to_bytes(32, "big"))


def test_public_key_is_x_times_g(key: SpendingKey) -> None:
    assert key.public == g1_encode(bn254.g1_mul_base(123456789) or (0, 0))
    assert key.to_bytes() == (123456789).to_bytes(32, "big")
    assert SpendingKey.from_bytes(key.to_bytes()).public == key.public


def test_address_definition(key: SpendingKey) -> None:
    assert address_of(key.public) == hash256(b"p2pnode/address/v1", key.public)[:20]
    assert len(address_of(key.public)) == 20


def test_generate_gives_distinct_valid_keys() -> None:
    a, b = SpendingKey.generate(), SpendingKey.generate()
    assert a.public != b.public
    for k in (a, b):
        assert 1 <= int.from_bytes(k.to_bytes(), "big") < CURVE_ORDER
        g1_decode(k.public)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 32,
        CURVE_ORDER.to_bytes(32, "big"),
        (CURVE_ORDER + 1).to_bytes(32, "big"),
        b"\xff" * 32,
        b"\x01" * 31,
        b"\x01" * 33,
    ],
)
def test_from_bytes_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):
        SpendingKey.from_bytes(data)


def test_from_bytes_accepts_extremes() -> None:
    SpendingKey.from_bytes((1).to_bytes(32, "big"))
    SpendingKey.from_bytes((CURVE_ORDER - 1).to_bytes(32, "big"))


@settings(max_examples=10, deadline=None)
@given(st.binary(max_size=100))
def test_prove_verify_round_trip(message: bytes) -> None:
    key = SpendingKey.generate()
    proof = key.prove(message)
    assert len(proof) == 96
    assert schnorr_verify(key.public, message, proof)


def test_proof_satisfies_the_verification_equation(key: SpendingKey) -> None:
    proof = key.prove(b"m")
    r_pt = g1_decode(proof[:64])
    s = int.from_bytes(proof[64:], "big")
    c = int.from_bytes(hash256(b"p2pnode/schnorr/v1", key.public, proof[:64], b"m"), "big") % CURVE_ORDER
    p_pt = g1_decode(key.public)
    assert bn254.g1_mul_base(s) == bn254.g1_add(r_pt, bn254.g1_mul(p_pt, c))


def test_nonces_are_fresh(key: SpendingKey) -> None:
    assert key.prove(b"m")[:64] != key.prove(b"m")[:64]


def test_proof_for_another_message_is_rejected(key: SpendingKey) -> None:
    proof = key.prove(b"pay 10 to alice")
    assert not schnorr_verify(key.public, b"pay 99 to mallory", proof)


def test_proof_under_another_key_is_rejected(key: SpendingKey) -> None:
    proof = key.prove(b"m")
    assert not schnorr_verify(SpendingKey.generate().public, b"m", proof)


def test_s_at_or_above_order_is_rejected(key: SpendingKey) -> None:
    proof = key.prove(b"m")
    s = int.from_bytes(proof[64:], "big")
    # s + r is the same scalar mod r, so only the range check stops it.
    assert bn254.g1_mul_base(s + CURVE_ORDER) == bn254.g1_mul_base(s)
    if s + CURVE_ORDER < 2**256:
        assert not schnorr_verify(key.public, b"m", proof[:64] + (s + CURVE_ORDER).to_bytes(32, "big"))
    assert not schnorr_verify(key.public, b"m", proof[:64] + CURVE_ORDER.to_bytes(32, "big"))
    assert not schnorr_verify(key.public, b"m", proof[:64] + b"\xff" * 32)


def test_tampered_proofs_are_rejected(key: SpendingKey) -> None:
    proof = key.prove(b"m")
    s = int.from_bytes(proof[64:], "big")
    assert not schnorr_verify(key.public, b"m", proof[:64] + ((s + 1) % CURVE_ORDER).to_bytes(32, "big"))
    x, y = g1_decode(proof[:64])
    neg_r = g1_encode((x, FIELD_MODULUS - y))
    assert not schnorr_verify(key.public, b"m", neg_r + proof[64:])


def test_invalid_points_are_rejected(key: SpendingKey) -> None:
    proof = key.prove(b"m")
    off_curve = (1).to_bytes(32, "big") + (3).to_bytes(32, "big")
    identity = b"\x00" * 64
    big = FIELD_MODULUS.to_bytes(32, "big") + (2).to_bytes(32, "big")
    for bad in (off_curve, identity, big):
        assert not schnorr_verify(bad, b"m", proof)
        assert not schnorr_verify(key.public, b"m", bad + proof[64:])


@pytest.mark.parametrize("n", [0, 63, 65, 95, 97])
def test_wrong_lengths_are_false(key: SpendingKey, n: int) -> None:
    proof = key.prove(b"m")
    assert not schnorr_verify(key.public, b"m", (proof * 2)[:n])
    assert not schnorr_verify((key.public * 2)[:n], b"m", proof)


def test_garbage_types_are_false(key: SpendingKey) -> None:
    proof = key.prove(b"m")
    assert not schnorr_verify("x" * 64, b"m", proof)  # type: ignore[arg-type]
    assert not schnorr_verify(key.public, None, proof)  # type: ignore[arg-type]
    assert not schnorr_verify(key.public, b"m", None)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def batch() -> list[tuple[bytes, bytes, bytes]]:
    keys = [SpendingKey.generate() for _ in range(32)]
    return [(k.public, b"transfer %d" % i, k.prove(b"transfer %d" % i)) for i, k in enumerate(keys)]


def test_batch_all_valid(batch: list[tuple[bytes, bytes, bytes]]) -> None:
    assert schnorr_batch_verify(batch) == [True] * 32
    assert schnorr_batch_verify([]) == []
    assert schnorr_batch_verify(batch[:1]) == [True]


@pytest.mark.parametrize("bad", [0, 13, 31])
def test_batch_finds_exactly_the_bad_item(batch: list[tuple[bytes, bytes, bytes]], bad: int) -> None:
    items = list(batch)
    public, _, proof = items[bad]
    items[bad] = (public, b"another message", proof)
    expected = [i != bad for i in range(32)]
    assert schnorr_batch_verify(items) == expected
    assert [schnorr_verify(*it) for it in items] == expected


def test_batch_swapped_proofs_and_several_bad(batch: list[tuple[bytes, bytes, bytes]]) -> None:
    items = list(batch)
    # Swap the proofs of 3 and 4: each is a valid proof, just not for that statement.
    items[3], items[4] = (items[3][0], items[3][1], batch[4][2]), (items[4][0], items[4][1], batch[3][2])
    items[20] = (items[20][0], items[20][1], items[20][2][:64] + b"\x00" * 32)
    expected = [i not in (3, 4, 20) for i in range(32)]
    assert schnorr_batch_verify(items) == expected


def test_batch_malformed_items_do_not_poison(batch: list[tuple[bytes, bytes, bytes]]) -> None:
    items: list[tuple[bytes, bytes, bytes]] = list(batch[:6])
    items[1] = (b"short", items[1][1], items[1][2])
    items[2] = (items[2][0], items[2][1], items[2][2][:64] + CURVE_ORDER.to_bytes(32, "big"))
    items[3] = (b"\x00" * 64, items[3][1], items[3][2])
    items.append(("garbage",))  # type: ignore[arg-type]
    assert schnorr_batch_verify(items) == [True, False, False, False, True, True, False]


def test_batch_is_bound_to_each_statement(batch: list[tuple[bytes, bytes, bytes]]) -> None:
    # The same valid proofs under permuted public keys must all fail.
    items = [(batch[(i + 1) % 8][0], m, pr) for i, (_, m, pr) in enumerate(batch[:8])]
    assert schnorr_batch_verify(items) == [False] * 8
