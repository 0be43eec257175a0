"""Episodes from record folders of every spec kind: right images, labels, shapes; one-line errors (issue 25)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from innerloop.data.metadataset import RecordSource
from innerloop.data.metadataset.records import encode_example, index_records, write_records
from innerloop.errors import ConfigError, UserError
from tests.data.metadataset.fixtures import WRITERS, pixel


def _assert_images_are_the_records(ep, mode, channels):
    """Each episode image is the solid colour of the (class, record index) the description names."""
    desc = ep.description
    for x, y, indices in ((ep.support_x, ep.support_y, desc.support_indices),
                          (ep.query_x, ep.query_y, desc.query_indices)):
        k = 0
        for label, (cls, idx) in enumerate(zip(ep.classes.tolist(), indices)):
            for i in idx.tolist():
                colour = np.atleast_1d(np.array(pixel(cls, i, mode), dtype=np.uint8))
                if channels == 3 and mode == "L":
                    colour = np.repeat(colour, 3)  # grayscale replicated to RGB
                if channels == 1 and mode == "RGB":
                    colour = None  # converted by Pillow's luma formula: checked for uniformity only
                image = x[k]
                assert y[k] == label
                if colour is not None:
                    assert np.all(image == colour[:, None, None]), (cls, i)
                else:
                    assert np.all(image == image[0, 0, 0])
                k += 1
        assert k == len(x)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_variable_episodes_of_every_kind(tmp_path, kind):
    writer, mode = WRITERS[kind]
    spec, _ = writer(tmp_path / kind)
    source = RecordSource(tmp_path / kind)
    assert source.spec.kind == kind and source.name == spec.name
    for split in ("train", "valid", "test"):
        for ep in source.episodes(split, 3, seed=0):
            assert set(ep.classes.tolist()) <= set(spec.classes(split).tolist())
            assert ep.support_x.dtype == np.uint8 and ep.support_x.shape == (ep.description.support_size, 3, 84, 84)
            assert ep.query_x.shape == (ep.description.query_size, 3, 84, 84)
            assert ep.support_y.dtype == np.int64 and set(ep.support_y.tolist()) == set(range(ep.ways))
            assert set(ep.query_y.tolist()) == set(range(ep.ways))
            _assert_images_are_the_records(ep, mode, 3)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_fixed_episodes_sizes_and_channels(tmp_path, kind):
    writer, mode = WRITERS[kind]
    writer(tmp_path / kind)
    source = RecordSource(tmp_path / kind, image_size=(10, 12), channels=1, resample="lanczos")
    sampler = source.sampler("train", seed=3, ways=4, shots=2, query=2)
    ep = source.episode(sampler.sample())
    assert ep.ways == 4 and ep.support_x.shape == (8, 1, 10, 12) and ep.query_x.shape == (8, 1, 10, 12)
    assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    _assert_images_are_the_records(ep, mode, 1)
    stored = RecordSource(tmp_path / kind, image_size=None)
    assert stored.read_images(0, [1, 0, 1]).shape == (3, 3, 6, 5)


def test_read_raw_returns_the_stored_bytes_in_the_order_asked(tmp_path):
    spec, written = WRITERS["flat"][0](tmp_path)
    source = RecordSource(tmp_path)
    assert source.read_raw(2, [3, 0, 3]) == [written[2][3], written[2][0], written[2][3]]
    assert source.num_records(2) == spec.images_per_class[2]
    with pytest.raises(ConfigError, match="record 9 out of range"):
        source.read_raw(2, [9])
    with pytest.raises(ConfigError, match="class id 16 out of range"):
        source.read_raw(16, [0])


def test_a_corrupt_record_in_an_episode_is_a_one_line_error(tmp_path):
    WRITERS["flat"][0](tmp_path)
    path = tmp_path / "0.tfrecords"
    offset = int(index_records(path).offsets[1]) + 20
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    source = RecordSource(tmp_path)
    assert source.read_images(0, [0, 2]).shape == (2, 3, 84, 84)  # the other records still read
    with pytest.raises(UserError) as err:
        source.read_images(0, [1])
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "record 1" in message and "CRC" in message
    assert RecordSource(tmp_path, verify=False).read_raw(0, [0])  # verification can be turned off


def test_count_and_label_mismatches_are_one_line_errors(tmp_path):
    WRITERS["flat"][0](tmp_path)
    write_records(tmp_path / "1.tfrecords", [encode_example(b"x", 1)] * 2)  # spec says 5
    with pytest.raises(UserError) as err:
        RecordSource(tmp_path).read_images(1, [0])
    assert "has 2 records but" in str(err.value) and "says class 1 has 5 images" in str(err.value)
    spec = json.loads((tmp_path / "dataset_spec.json").read_text())
    write_records(tmp_path / "3.tfrecords", [encode_example(b"x", 4)] * spec["images_per_class"]["3"])
    with pytest.raises(UserError, match="record 0 of .*3.tfrecords has label 4, expected 3"):
        RecordSource(tmp_path).read_raw(3, [0])
    assert RecordSource(tmp_path, check_labels=False).read_raw(3, [0]) == [b"x"]
    (tmp_path / "4.tfrecords").unlink()
    with pytest.raises(UserError, match="TFRecord file not found"):
        RecordSource(tmp_path).read_raw(4, [0])


def test_decoded_image_cache(tmp_path):
    WRITERS["bilevel"][0](tmp_path)
    source = RecordSource(tmp_path, cache_images=3)
    first = source.read_images(5, [0, 1, 2])
    (tmp_path / "5.tfrecords").unlink()  # cached images need no file
    assert np.array_equal(source.read_images(5, [2, 0]), first[[2, 0]])
    with pytest.raises(UserError, match="cannot read TFRecord file .*5.tfrecords"):  # an uncached one needs it
        source.read_images(5, [3])


def test_source_option_errors(tmp_path):
    with pytest.raises(UserError, match="no dataset_spec.json"):
        RecordSource(tmp_path)
    WRITERS["flat"][0](tmp_path)
    with pytest.raises(ConfigError, match="channels must be 1"):
        RecordSource(tmp_path, channels=2)
    with pytest.raises(ConfigError, match="unknown resample filter"):
        RecordSource(tmp_path, resample="cubicle")
    with pytest.raises(ConfigError, match="image_size"):
        RecordSource(tmp_path, image_size=0)


def test_unpacked_labels_from_another_writer_read_the_same(tmp_path):
    spec, written = WRITERS["flat"][0](tmp_path / "packed")
    from tests.data.metadataset.fixtures import write_flat

    write_flat(tmp_path / "unpacked", packed=False)
    a, b = RecordSource(tmp_path / "packed"), RecordSource(tmp_path / "unpacked")
    assert a.read_raw(7, [0, 1]) == b.read_raw(7, [0, 1]) == written[7][:2]
    assert (tmp_path / "packed" / "7.tfrecords").read_bytes() != (tmp_path / "unpacked" / "7.tfrecords").read_bytes()
