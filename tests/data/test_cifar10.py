"""CIFAR-10: the real PNG-sheet subset, and ``cifar-10-batches-py`` pickles made from its arrays."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from innerloop.data import cifar10, load_dataset
from innerloop.errors import ConfigError, UserError
from tests.data.conftest import shared

TRAIN_COUNTS = [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]
TEST_COUNTS = [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


@pytest.fixture(scope="module")
def sheets():
    root = shared("cifar10")
    return {s: cifar10.read(root, s) for s in ("train", "test")}


def _write_batches(folder, sheets, protocol, bytes_keys):
    """The official layout from the sheet arrays: train split over 5 batches, test in one."""
    folder.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    train = sheets["train"]
    for i, rows in enumerate(np.array_split(np.arange(len(train.labels)), 5), 1):
        batch = {key("batch_label"): key(f"training batch {i} of 5"),
                 key("labels"): train.labels[rows].tolist(),
                 key("data"): train.images[rows].reshape(len(rows), 3072),
                 key("filenames"): [key(f"img_{r}.png") for r in rows]}
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    test = sheets["test"]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({key("labels"): test.labels.tolist(), key("data"): test.images.reshape(-1, 3072)}, f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({key("label_names"): [key(n) for n in cifar10.CLASSES], key("num_vis"): 3072}, f, protocol=protocol)
    return folder


def test_sheet_subset_counts_and_first_labels(sheets):
    train, test = sheets["train"], sheets["test"]
    assert train.images.shape == (4000, 3, 32, 32) and test.images.shape == (1000, 3, 32, 32)
    assert np.bincount(train.labels).tolist() == TRAIN_COUNTS
    assert np.bincount(test.labels).tolist() == TEST_COUNTS
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert train.class_names[0] == "airplane" and train.class_names[9] == "truck"


@pytest.mark.parametrize("protocol,bytes_keys", [(2, True), (5, False)])
def test_pickle_reader_is_pixel_identical_to_the_sheets(sheets, tmp_path, protocol, bytes_keys):
    _write_batches(tmp_path / "cifar-10-batches-py", sheets, protocol, bytes_keys)
    for split in ("train", "test"):
        ds = load_dataset("cifar10", tmp_path, split, cache_dir=tmp_path / "cache")
        assert np.array_equal(ds.images, sheets[split].images)
        assert np.array_equal(ds.labels, sheets[split].labels)
        assert ds.class_names == cifar10.CLASSES


def test_format_option_picks_either(sheets, tmp_path):
    root = shared("cifar10")
    (tmp_path / "convnetjs").symlink_to(root / "convnetjs")
    _write_batches(tmp_path / "cifar-10-batches-py", sheets, 2, True)
    assert np.array_equal(cifar10.read(tmp_path, "test", format="sheets").images, sheets["test"].images)
    assert np.array_equal(cifar10.read(tmp_path, "test", format="pickle").images, sheets["test"].images)
    with pytest.raises(ConfigError, match="format"):
        cifar10.read(tmp_path, "test", format="hdf5")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_with_code_is_refused_without_running_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(UserError, match="not a plain data pickle") as err:
        cifar10.read(tmp_path, "test")
    assert not marker.exists() and "\n" not in str(err.value)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": os.system}, f, protocol=2)
    with pytest.raises(UserError, match="refusing global"):
        cifar10.read(tmp_path, "test")


@pytest.mark.parametrize("content,match", [
    ([1, 2, 3], "should hold a dict"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "3072"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, "CIFAR-100"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, "0..9"),
])
def test_wrong_structure_is_rejected(tmp_path, content, match):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(content, f, protocol=2)
    with pytest.raises(UserError, match=match):
        cifar10.read(tmp_path, "test")


def test_truncated_or_missing_batches(sheets, tmp_path):
    folder = _write_batches(tmp_path / "cifar-10-batches-py", sheets, 2, True)
    data = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match="truncated or corrupt"):
        cifar10.read(tmp_path, "test")
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        cifar10.read(tmp_path, "train")
    with pytest.raises(UserError, match="innerloop data download cifar10"):
        cifar10.read(tmp_path / "nothing", "train")


def test_image_size_option_resizes_with_pillow(sheets):
    from PIL import Image

    small = cifar10.read(shared("cifar10"), "test", image_size=16, resample="bilinear")
    assert small.images.shape == (1000, 3, 16, 16)
    rgb = sheets["test"].images[7].transpose(1, 2, 0)
    expected = np.asarray(Image.fromarray(rgb).resize((16, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(small.images[7].transpose(1, 2, 0), expected)
