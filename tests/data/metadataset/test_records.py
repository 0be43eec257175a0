"""CRC-32C, the tf.train.Example codec and TFRecord framing/random access (issue 25)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from innerloop.data.metadataset import crc as crc_mod
from innerloop.data.metadataset.crc import crc32c, crc32c_python, mask, masked_crc32c, unmask
from innerloop.data.metadataset.example import (ExampleError, decode_example, decode_features, encode_example,
                                                encode_features)
from innerloop.data.metadataset.records import (RecordFile, frame, index_records, iter_records, write_records)
from innerloop.errors import UserError
from tests.data.metadataset.fixtures import WRITERS


# -- CRC-32C ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    (b"123456789", 0xE3069283),                 # the standard check value
    (b"", 0x00000000),
    (bytes(32), 0x8A9136AA),                    # RFC 3720 (iSCSI) B.4 test vectors
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_crc32c_known_answers(data, expected):
    assert crc32c(data) == expected
    assert crc32c_python(data) == expected
    assert crc_mod._crc32c_numpy(data) == expected


@pytest.mark.parametrize("n", [2047, 2048, 2049, 4099, 65_536, 100_003])
def test_lane_parallel_numpy_path_equals_the_byte_loop(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    expected = crc32c_python(data)
    assert crc_mod._crc32c_numpy(data) == expected
    assert crc_mod._crc32c_numpy(data[n // 3:], crc_mod._crc32c_numpy(data[:n // 3])) == expected  # continuation
    assert crc_mod._crc32c_numpy(memoryview(bytearray(data))) == expected


def test_mask_is_rotate_right_15_plus_constant_and_inverts():
    c = 0x12345678
    assert mask(c) == ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    for value in (0, 1, 0xFFFFFFFF, 0xE3069283, c):
        assert unmask(mask(value)) == value
    assert masked_crc32c(b"123456789") == mask(0xE3069283)


# -- tf.train.Example -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("packed", [True, False])
def test_example_round_trip_packed_and_unpacked(packed):
    payload = encode_example(b"\x89PNG fake", 1234567, packed=packed)
    assert decode_example(payload) == (b"\x89PNG fake", 1234567)


def test_features_of_every_type_negative_ints_and_unknowns_are_handled():
    payload = encode_features({"image": [b"a", b"bc"], "label": [-3, 2**40], "embedding": [0.5, -1.25],
                               "empty": []}, packed=False)
    features = decode_features(payload)
    assert features["image"] == [b"a", b"bc"] and features["label"] == [-3, 2**40]
    assert features["embedding"] == [0.5, -1.25] and features["empty"] == []
    # unknown fields are skipped: a varint and a fixed64 around the Example's features, an unknown feature
    unknown = bytes([5 << 3 | 0, 7]) + payload + bytes([9 << 3 | 1]) + bytes(8)
    assert decode_features(unknown)["label"] == [-3, 2**40]
    with_extra_feature = encode_features({"other": [1.0], "image": [b"x"], "label": [4]})
    assert decode_example(with_extra_feature) == (b"x", 4)


@pytest.mark.parametrize("payload,match", [
    (b"\x0a\x05abc", "runs past"),
    (b"\x0a", "truncated varint"),
    (b"\x0b", "wire type 3"),
    (encode_features({"image": [b"x"]}), "'label'"),
    (encode_features({"image": [b"x", b"y"], "label": [1]}), "'image'"),
    (encode_features({"image": [b"x"], "label": [0.5]}), "'label'"),
])
def test_malformed_examples_raise(payload, match):
    with pytest.raises(ExampleError, match=match):
        decode_example(payload)


# -- framing, index, random access ------------------------------------------------------------------------------

def test_frame_layout(tmp_path):
    payload = b"hello"
    record = frame(payload)
    assert len(record) == 8 + 4 + 5 + 4
    assert struct.unpack("<Q", record[:8])[0] == 5
    assert struct.unpack("<I", record[8:12])[0] == masked_crc32c(record[:8])
    assert record[12:17] == payload
    assert struct.unpack("<I", record[17:])[0] == masked_crc32c(payload)
    path = tmp_path / "x.tfrecords"
    assert write_records(path, [b"", payload, b"\x00" * 3000]) == 3
    assert list(iter_records(path)) == [b"", payload, b"\x00" * 3000]
    index = index_records(path)
    assert index.offsets.tolist() == [0, 16, 16 + 21] and index.lengths.tolist() == [0, 5, 3000]


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_fixture_kind_round_trips(tmp_path, kind):
    writer, _ = WRITERS[kind]
    spec, written = writer(tmp_path / kind)
    for class_id, images in written.items():
        path = tmp_path / kind / f"{class_id}.tfrecords"
        with RecordFile(path) as records:
            assert len(records) == len(images) == spec.images_per_class[class_id]
            for i in reversed(range(len(images))):  # random order: seek per record
                assert records.read_example(i) == (images[i], class_id)
        assert [decode_example(p) for p in iter_records(path)] == [(b, class_id) for b in images]


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_flipped_payload_byte_is_detected_only_when_that_record_is_read(tmp_path):
    path = tmp_path / "3.tfrecords"
    write_records(path, [encode_example(b"image%d" % i, 3) for i in range(4)])
    index = index_records(path)
    _flip(path, int(index.offsets[1]) + 12 + 5)  # inside record 1's payload
    with RecordFile(path) as records:
        assert records.read_example(0) == (b"image0", 3)
        assert records.read_example(2) == (b"image2", 3)  # random access: record 1 is never read
        with pytest.raises(UserError) as err:
            records.read(1)
    message = _one_line(err)
    assert str(path) in message and "record 1" in message and "payload CRC mismatch" in message
    assert "to-records" in message  # names the fix
    with RecordFile(path, verify=False) as records:  # verification is optional
        assert records.read(1) != encode_example(b"image1", 3)
    with pytest.raises(UserError, match="record 1"):
        list(iter_records(path))


def test_a_flipped_length_byte_or_a_truncated_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "0.tfrecords"
    write_records(path, [encode_example(b"abc", 0)] * 3)
    good = path.read_bytes()
    _flip(path, int(index_records(path).offsets[2]) + 1)
    with pytest.raises(UserError) as err:
        index_records(path)
    assert "record 2" in _one_line(err) and "length CRC mismatch" in str(err.value)
    path.write_bytes(good[:-3])
    with pytest.raises(UserError) as err:
        RecordFile(path).read(0)  # the index is built first, and sees the short last record
    assert "record 2" in _one_line(err) and "file ends inside the record" in str(err.value)
    path.write_bytes(good + b"\x01\x02")
    with pytest.raises(UserError, match="record 3: file ends inside a record header"):
        index_records(path)


def test_a_record_that_is_not_an_example_names_file_and_index(tmp_path):
    path = tmp_path / "5.tfrecords"
    write_records(path, [encode_example(b"ok", 5), b"\x0b not a proto"])
    with pytest.raises(UserError) as err:
        RecordFile(path).read_example(1)
    assert str(path) in _one_line(err) and "record 1" in str(err.value) and "tf.train.Example" in str(err.value)


def test_missing_file_and_out_of_range_index(tmp_path):
    with pytest.raises(UserError, match="not found"):
        index_records(tmp_path / "nope.tfrecords")
    path = tmp_path / "1.tfrecords"
    write_records(path, [b"x"])
    with pytest.raises(IndexError, match="has 1 records"):
        RecordFile(path).read(1)
