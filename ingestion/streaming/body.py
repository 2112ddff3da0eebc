"""A message's bytes before its events are validated: the declared content encoding undone
(bounded: a gzip bomb is refused), the size limits, and the batch cut to its cap, in work and memory
bounded by the message's size."""
from __future__ import annotations

import re
import zlib
from typing import Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from msgspec import UNSET, Raw, UnsetType

from .events import CONTENT_ENCODINGS, MAX_EVENTS_PER_MESSAGE, MAX_MESSAGE_BYTES, Rejection, whole_message


class _Envelope(msgspec.Struct):
    events: Raw | UnsetType = UNSET  # the batch's JSON text: its items are decoded only up to the cap


ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)
_BATCH_DECODER: Final = msgspec.json.Decoder(list[Raw])
_GENERIC_DECODER: Final = msgspec.json.Decoder()


def is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def whole_message(error_type: str, message: str, data: bytes) -> Rejection:
    return Rejection(error_type=error_type, error_message=message, payload=data, event_index=None)


def decode_body(
    data: bytes, content_encoding: str | None, max_bytes: int = MAX_MESSAGE_BYTES
) -> bytes | Rejection:
    """Undo the declared content encoding, refusing bodies that are (or inflate) too large."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        return whole_message(
            "decompression",
            f"attributes.content-encoding: unsupported value {content_encoding!r}, "
            f"expected one of {', '.join(CONTENT_ENCODINGS)}",
            data,
        )
    if len(data) > max_bytes:
        return whole_message("oversize", f"message: {len(data)} bytes, the limit is {max_bytes}", data)
    if encoding == "identity":
        return data
    return _gunzip(data, max_bytes)


def _gunzip(data: bytes, max_bytes: int) -> bytes | Rejection:
    """Inflate every gzip member (concatenated members are one valid gzip stream), never
    producing more than ``max_bytes + 1`` bytes whatever the data claims."""
    parts: list[bytes] = []
    size = 0
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, max_bytes + 1 - size)
        except zlib.error as exc:
            return whole_message("decompression", f"message: not valid gzip data ({exc})", data)
        size += len(part)
        if size > max_bytes:
            return whole_message(
                "oversize", f"message: inflates to more than {max_bytes} bytes, the limit", data
            )
        if not inflater.eof:
            return whole_message("decompression", "message: gzip data is truncated", data)
        parts.append(part)
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)



_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPENERS: Final = pa.array([ord("["), ord("{")], pa.uint8())
_CLOSERS: Final = pa.array([ord("]"), ord("}")], pa.uint8())


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in JSON text (strings skipped), vectorised: linear in the
    size, no recursion."""
    text = _JSON_STRING.sub(b'""', data)
    chars = pa.Array.from_buffers(pa.uint8(), len(text), [None, pa.py_buffer(text)])
    steps = pc.subtract(pc.cast(pc.is_in(chars, _OPENERS), pa.int32()), pc.cast(pc.is_in(chars, _CLOSERS), pa.int32()))
    depth = pc.max(pc.cumulative_sum(steps)).as_py() if len(text) else 0
    return depth or 0


# A batch with fewer separators than this is decoded whole (each item costs about 72 bytes);
# one with more has its items counted first and only the first MAX_EVENTS_PER_MESSAGE decoded.
_DECODE_WHOLE_BELOW: Final = 400_000


def batch_items(raw: bytes) -> tuple[list[Raw], int]:
    """The first ``MAX_EVENTS_PER_MESSAGE`` items of the JSON array ``raw`` and how many it holds.
    Items past the cap are counted, not decoded (a vectorised pass over the text), so 9 MB of
    ``1,1,1,...`` costs a few arrays of its size rather than a Python object per item."""
    if raw.count(b",") < _DECODE_WHOLE_BELOW:  # at most that many items: decode them all (< 30 MB)
        items = _BATCH_DECODER.decode(raw)
        return (items[:MAX_EVENTS_PER_MESSAGE] if len(items) > MAX_EVENTS_PER_MESSAGE else items), len(items)
    total, cut = _count_items(raw)  # its arrays are freed before the decode
    return _BATCH_DECODER.decode(raw if cut is None else raw[:cut] + b"]"), total


def _count_items(raw: bytes) -> tuple[int, int | None]:
    """How many items the JSON array ``raw`` holds, and the offset of the separator after the
    ``MAX_EVENTS_PER_MESSAGE``-th (None when there are no more)."""
    masked = _JSON_STRING.sub(lambda m: b'"' + b"." * (len(m[0]) - 2) + b'"', raw)  # same offsets
    chars = pa.Array.from_buffers(pa.uint8(), len(masked), [None, pa.py_buffer(masked)])
    # int16 is enough: the envelope's decode has already refused anything nested deeper than ~1000
    depth = pc.cumulative_sum(pc.subtract(pc.cast(pc.is_in(chars, _OPENERS), pa.int16()),
                                          pc.cast(pc.is_in(chars, _CLOSERS), pa.int16())))
    separators = pc.indices_nonzero(pc.and_(pc.equal(chars, ord(",")), pc.equal(depth, 1)))
    total = len(separators) + 1
    return total, None if total <= MAX_EVENTS_PER_MESSAGE else separators[MAX_EVENTS_PER_MESSAGE - 1].as_py()


def too_deep(data: bytes, body: bytes) -> Rejection:
    return whole_message("malformed_json", f"message: JSON nested {nesting_depth(body)} levels deep, more than the "
                  "decoder's stack allows (an event nests 3 levels)", data)

