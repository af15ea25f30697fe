"""Canonical encodings only: bytes that do not re-encode to themselves are refused.

A small msgpack encoder here may pick a wider form than needed for every integer, string, byte string
and array. Encoded with the narrowest forms it must equal ``codec.pack`` and decode; with any wider
form anywhere it must be refused, so every message has exactly one encoding (and one gossip id).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.errors import DecodeError
from p2pnode.wire import codec
from p2pnode.wire.messages import Ping, decode

GOLDEN = json.loads((Path(__file__).resolve().parent.parent / "golden" / "messages.json").read_text())


def _uint(v: int, widen: int) -> bytes:
    forms: list[bytes] = []
    if v <= 0x7F:
        forms.append(bytes([v]))
    if v <= 0xFF:
        forms.append(b"\xcc" + struct.pack(">B", v))
    if v <= 0xFFFF:
        forms.append(b"\xcd" + struct.pack(">H", v))
    if v <= 0xFFFFFFFF:
        forms.append(b"\xce" + struct.pack(">I", v))
    forms.append(b"\xcf" + struct.pack(">Q", v))
    return forms[min(widen, len(forms) - 1)]


def _length(n: int, widen: int, fix: tuple[int, int] | None, tags: tuple[int, int, int]) -> bytes:
    forms: list[bytes] = []
    if fix is not None and n < fix[1]:
        forms.append(bytes([fix[0] | n]))
    t8, t16, t32 = tags
    if t8 and n <= 0xFF:
        forms.append(bytes([t8, n]))
    if n <= 0xFFFF:
        forms.append(bytes([t16]) + struct.pack(">H", n))
    forms.append(bytes([t32]) + struct.pack(">I", n))
    return forms[min(widen, len(forms) - 1)]


def encode(value: Any, widths: list[int]) -> bytes:
    """msgpack of ``value``; each integer, length header takes the next width choice (0 = narrowest)."""

    def pick() -> int:
        return widths.pop(0) if widths else 0

    if value is None:
        return b"\xc0"
    if value is True or value is False:
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        if value < 0:  # not used by messages; encode canonically
            return codec.pack(value)
        return _uint(value, pick())
    if isinstance(value, bytes):
        return _length(len(value), pick(), None, (0xC4, 0xC5, 0xC6)) + value
    if isinstance(value, str):
        raw = value.encode()
        return _length(len(raw), pick(), (0xA0, 32), (0xD9, 0xDA, 0xDB)) + raw
    if isinstance(value, list):
        head = _length(len(value), pick(), (0x90, 16), (0, 0xDC, 0xDD))
        return head + b"".join(encode(v, widths) for v in value)
    if isinstance(value, dict):
        head = _length(len(value), pick(), (0x80, 16), (0, 0xDE, 0xDF))
        return head + b"".join(encode(k, widths) + encode(v, widths) for k, v in value.items())
    return codec.pack(value)


def test_the_narrowest_forms_are_what_pack_writes() -> None:
    for entry in GOLDEN.values():
        data = bytes.fromhex(entry["hex"])
        assert encode(codec.unpack(data), []) == data


def test_a_wider_integer_is_refused() -> None:
    assert decode(bytes.fromhex("920405")) == Ping(nonce=5)
    with pytest.raises(DecodeError, match="non-canonical"):
        decode(bytes.fromhex("9204cf0000000000000005"))  # Ping(nonce=5) with a u64 nonce
    with pytest.raises(DecodeError, match="non-canonical"):
        decode(bytes.fromhex("dc0002" "04" "05"))  # the same with an array16 header


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(GOLDEN)), widths=st.lists(st.integers(0, 4), max_size=64))
def test_every_message_has_exactly_one_accepted_encoding(name: str, widths: list[int]) -> None:
    data = bytes.fromhex(GOLDEN[name]["hex"])
    value = codec.unpack(data)
    variant = encode(value, list(widths))
    if variant == data:
        assert decode(variant) is not None
    else:
        with pytest.raises(DecodeError, match="non-canonical"):
            decode(variant)
