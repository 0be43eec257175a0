"""A minimal protobuf wire-format codec for ``tf.train.Example``, the payload of Meta-Dataset records.

Schema (``tensorflow/core/example/{example,feature}.proto``), field numbers in brackets::

    Example   { Features features [1]; }
    Features  { map<string, Feature> feature [1]; }      # map entry: key [1] string, value [2] Feature
    Feature   { oneof kind { BytesList bytes_list [1]; FloatList float_list [2]; Int64List int64_list [3]; } }
    BytesList { repeated bytes value [1]; }
    FloatList { repeated float value [1] [packed]; }
    Int64List { repeated int64 value [1] [packed]; }

Wire format: each field is a varint key ``(field_number << 3) | wire_type`` followed by a varint
(type 0), 8 bytes (type 1), a varint length and that many bytes (type 2) or 4 bytes (type 5).
Varints are little-endian base-128 with the high bit as continuation; an int64 is its two's
complement as an unsigned 64-bit varint. Repeated scalars are accepted packed (one type-2 field) and
unpacked (one field per value), as proto3 parsers must; unknown fields and features are skipped.
Meta-Dataset records carry ``image`` (one encoded image, bytes_list) and ``label`` (the absolute
class id, int64_list).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence

__all__ = ["ExampleError", "encode_example", "encode_features", "decode_features", "decode_example"]

FeatureValue = bytes | int | float | Sequence[bytes] | Sequence[int] | Sequence[float]


class ExampleError(ValueError):
    """The bytes are not a well-formed ``tf.train.Example`` (the caller names the file and record)."""


# -- encoding ---------------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _feature(value: FeatureValue, packed: bool) -> bytes:
    """One serialized ``Feature`` (bytes -> bytes_list, int -> int64_list, float -> float_list)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, (bytes, bytearray, memoryview)) for v in values) and values:
        return _delimited(1, b"".join(_delimited(1, bytes(v)) for v in values))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if packed:
            body = _delimited(1, b"".join(_varint(v) for v in values)) if values else b""
        else:
            body = b"".join(_key(1, 0) + _varint(v) for v in values)
        return _delimited(3, body)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if packed:
            body = _delimited(1, struct.pack(f"<{len(values)}f", *values)) if values else b""
        else:
            body = b"".join(_key(1, 5) + struct.pack("<f", v) for v in values)
        return _delimited(2, body)
    raise TypeError(f"feature values must be all bytes, all ints or all floats, got {values[:3]!r}")


def encode_features(features: Mapping[str, FeatureValue], *, packed: bool = True) -> bytes:
    """Serialize ``{name: value}`` as a ``tf.train.Example`` (``packed=False`` writes repeated scalars unpacked)."""
    entries = b""
    for name, value in features.items():
        entry = _delimited(1, name.encode("utf-8")) + _delimited(2, _feature(value, packed))
        entries += _delimited(1, entry)
    return _delimited(1, entries)


def encode_example(image: bytes, label: int, *, packed: bool = True) -> bytes:
    """A Meta-Dataset record payload: ``image`` (encoded image bytes) and ``label`` (absolute class id)."""
    return encode_features({"image": [bytes(image)], "label": [int(label)]}, packed=packed)


# -- decoding ---------------------------------------------------------------------------------------------------


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ExampleError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ExampleError("varint longer than 10 bytes")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int | memoryview]]:
    """``(field, wire_type, value)`` for each field in ``buf[start:end]``; ``value`` is an int or a slice."""
    pos = start
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise ExampleError("field number 0")
        if wire_type == 0:
            value, pos = _read_varint(buf, pos, end)
            yield field, 0, value
        elif wire_type == 2:
            size, pos = _read_varint(buf, pos, end)
            if pos + size > end:
                raise ExampleError("length-delimited field runs past its message")
            yield field, 2, buf[pos:pos + size]
            pos += size
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            if pos + width > end:
                raise ExampleError("truncated fixed-width field")
            yield field, wire_type, buf[pos:pos + width]
            pos += width
        else:
            raise ExampleError(f"unsupported wire type {wire_type} (groups are not used by tf.train.Example)")


def _signed64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def _decode_feature(buf: memoryview) -> list[bytes] | list[int] | list[float]:
    out: list = []
    for field, wire_type, value in _fields(buf, 0, len(buf)):
        if wire_type != 2:
            continue  # unknown scalar field of Feature
        if field == 1:  # BytesList
            out = [bytes(v) for f, wt, v in _fields(value, 0, len(value)) if f == 1 and wt == 2]
        elif field == 3:  # Int64List: packed (wire type 2) and unpacked (type 0) values, in order
            ints: list[int] = []
            for f, wt, v in _fields(value, 0, len(value)):
                if f != 1:
                    continue
                if wt == 0:
                    ints.append(_signed64(v))  # type: ignore[arg-type]
                elif wt == 2:
                    pos = 0
                    while pos < len(v):
                        item, pos = _read_varint(v, pos, len(v))  # type: ignore[arg-type]
                        ints.append(_signed64(item))
            out = ints
        elif field == 2:  # FloatList
            floats: list[float] = []
            for f, wt, v in _fields(value, 0, len(value)):
                if f != 1:
                    continue
                if wt == 5:
                    floats.append(struct.unpack("<f", v)[0])
                elif wt == 2:
                    if len(v) % 4:
                        raise ExampleError("packed float list length is not a multiple of 4")
                    floats.extend(struct.unpack(f"<{len(v) // 4}f", v))
            out = floats
    return out


def decode_features(payload: bytes | bytearray | memoryview) -> dict[str, list]:
    """``{name: values}`` of a serialized ``tf.train.Example`` (bytes/int/float lists); ExampleError if malformed."""
    buf = memoryview(payload)
    features: dict[str, list] = {}
    for field, wire_type, value in _fields(buf, 0, len(buf)):
        if field != 1 or wire_type != 2:
            continue
        for f, wt, entry in _fields(value, 0, len(value)):  # type: ignore[arg-type]
            if f != 1 or wt != 2:
                continue
            name, feature = None, None
            for ef, ewt, ev in _fields(entry, 0, len(entry)):  # type: ignore[arg-type]
                if ef == 1 and ewt == 2:
                    try:
                        name = bytes(ev).decode("utf-8")
                    except UnicodeDecodeError:
                        raise ExampleError("feature name is not UTF-8") from None
                elif ef == 2 and ewt == 2:
                    feature = ev
            if name is not None:
                features[name] = _decode_feature(feature) if feature is not None else []
    return features


def decode_example(payload: bytes | bytearray | memoryview) -> tuple[bytes, int]:
    """``(image bytes, label)`` of a Meta-Dataset record; ExampleError if either feature is missing or not single."""
    features = decode_features(payload)
    image, label = features.get("image"), features.get("label")
    if not image or not isinstance(image[0], bytes) or len(image) != 1:
        raise ExampleError("no single bytes feature 'image'")
    if not label or not isinstance(label[0], int) or len(label) != 1:
        raise ExampleError("no single int64 feature 'label'")
    return image[0], label[0]
