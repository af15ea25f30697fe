"""The one codec: msgpack values in 4-byte big-endian length-prefixed frames.

Rules (they are the wire format; tests pin golden bytes for every message):

- A frame is ``len (4 bytes, big-endian) || msgpack value``; ``len`` counts the value's bytes.
- A length above the configured maximum raises :class:`FrameTooLarge` as soon as the 4 header bytes
  are in, before any buffer for the body exists. The caller closes the connection.
- Values are packed with ``use_bin_type=True`` so that ``bytes`` and ``str`` stay distinct, and
  unpacked strictly: no ext types, no non-string map keys, bounded container sizes.
- Canonical encodings only: bytes are accepted only if packing the decoded value gives them back
  (smallest integer and length forms, float64, no duplicate map keys). A message therefore has
  exactly one encoding, and ids that hash the bytes as received name it once: a relay cannot mint
  fresh ids for one message by re-encoding it.
- :class:`FrameDecoder` is sans-I/O: feed it bytes, take complete frames out.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from p2pnode.errors import DecodeError, FrameTooLarge

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 1 << 20


def pack(value: Any) -> bytes:
    """Deterministic msgpack bytes of ``value`` (arrays keep order; maps are only used for status)."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes, *, max_len: int = DEFAULT_MAX_FRAME) -> Any:
    """Strictly decode one msgpack value filling all of ``data``.

    Error handling: raises :class:`DecodeError` for anything that is not exactly one well-formed value.
    """
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=max_len,
            max_str_len=max_len,
            max_array_len=max_len,
            max_map_len=1024,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        detail = str(exc) or "not a valid msgpack value"
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}: {detail}") from None
    if pack(value) != data:
        raise DecodeError("non-canonical msgpack encoding (it does not re-encode to itself)")
    return value


def nested_slice(data: bytes, path: tuple[int, ...]) -> bytes | None:
    """The bytes, as received, of the array element at ``path`` inside the msgpack array ``data``
    (e.g. ``(1, 1)``: element 1 of element 1), or None if ``data`` does not have that shape.
    Bounded work: it skips over values without building them."""
    try:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1))
        unpacker.feed(data)
        for index in path:
            length = unpacker.read_array_header()
            if index >= length:
                return None
            for _ in range(index):
                unpacker.skip()
        start = unpacker.tell()
        unpacker.skip()
        return data[start : unpacker.tell()]
    except (ValueError, TypeError, msgpack.OutOfData, msgpack.FormatError, msgpack.StackError):
        return None


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Split a byte stream into frames.

    Invariants: at most ``max_frame`` bytes of body are ever buffered for one frame, and a header
    announcing more raises before anything else is read.
    """

    __slots__ = ("_buf", "_max", "_need")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self._need: int | None = None

    def limit(self, max_frame: int) -> None:
        """Change the largest frame body accepted (frames already announced keep their length check)."""
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every frame body now complete (possibly none)."""
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._need is None:
                if len(self._buf) < HEADER.size:
                    return out
                (length,) = HEADER.unpack_from(self._buf)
                if length > self._max:
                    raise FrameTooLarge(length, self._max)
                del self._buf[: HEADER.size]
                self._need = length
            if len(self._buf) < self._need:
                return out
            out.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None

    @property
    def buffered(self) -> int:
        return len(self._buf)
