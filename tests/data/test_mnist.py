"""MNIST IDX reader on the real files: counts, label histogram, gz/raw, corrupt files."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from innerloop.data import load_dataset, mnist
from innerloop.errors import ConfigError, UserError
from tests.data.conftest import shared

TRAIN_HIST = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_HIST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def root():
    return shared("mnist")


@pytest.fixture(scope="module")
def test_split(root):
    return mnist.read(root, "test")


def test_train_and_test_counts_and_histograms(root, test_split):
    train = load_dataset("mnist", root, "train", cache=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == TRAIN_HIST
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_split.images.shape == (10000, 1, 28, 28)
    assert np.bincount(test_split.labels).tolist() == TEST_HIST
    assert test_split.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert test_split.class_names == [str(d) for d in range(10)]


def test_uncompressed_files_and_torchvision_layout_read_the_same(root, test_split, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for base in mnist.FILES["test"]:
        data = gzip.decompress((root / f"{base}.gz").read_bytes())
        (raw / base).write_bytes(data)
    assert hashlib.md5((raw / "t10k-images-idx3-ubyte").read_bytes()).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    again = mnist.read(tmp_path, "test")
    assert np.array_equal(again.images, test_split.images) and np.array_equal(again.labels, test_split.labels)


def _copy_test(root, tmp_path, images_bytes=None, labels_bytes=None):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        images_bytes if images_bytes is not None else (root / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        labels_bytes if labels_bytes is not None else (root / "t10k-labels-idx1-ubyte.gz").read_bytes())


def _one_line_error(path, match):
    with pytest.raises(UserError, match=match) as err:
        mnist.read(path, "test")
    assert "\n" not in str(err.value)
    return str(err.value)


def test_truncated_gzip_is_a_one_line_error(root, tmp_path):
    data = (root / "t10k-images-idx3-ubyte.gz").read_bytes()
    _copy_test(root, tmp_path, images_bytes=data[: len(data) // 2])
    msg = _one_line_error(tmp_path, "truncated or corrupt")
    assert "innerloop data download mnist" in msg


def test_truncated_raw_file_bad_magic_and_wrong_kind(root, tmp_path):
    raw = gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = (root / "t10k-labels-idx1-ubyte.gz").read_bytes()
    _copy_test(root, tmp_path, images_bytes=raw[:-100], labels_bytes=labels)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    _one_line_error(tmp_path, "truncated")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw + b"\0")
    _one_line_error(tmp_path, "trailing bytes")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34" + raw[2:])
    _one_line_error(tmp_path, "bad magic")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(labels))  # a labels file as images
    _one_line_error(tmp_path, "dimensions")


def test_count_mismatch_missing_file_and_bad_split(root, tmp_path):
    raw = bytearray(gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[4:8] = (9999).to_bytes(4, "big")
    _copy_test(root, tmp_path, labels_bytes=gzip.compress(bytes(raw[:-1])))
    _one_line_error(tmp_path, "9999 labels")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    _one_line_error(tmp_path, "not found")
    with pytest.raises(ConfigError, match="train, test"):
        mnist.read(root, "val")


def test_image_size_option_resizes_with_pillow(root, test_split):
    from PIL import Image

    small = mnist.read(root, "test", image_size=14)
    assert small.images.shape == (10000, 1, 14, 14)
    expected = np.asarray(Image.fromarray(test_split.images[3, 0]).resize((14, 14), Image.Resampling.LANCZOS))
    assert np.array_equal(small.images[3, 0], expected)
