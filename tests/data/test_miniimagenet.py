"""miniImageNet: the real Ravi/Vinyals split csv files, and small generated csv+jpg and pickle sets."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from innerloop.data import load_dataset, miniimagenet
from innerloop.errors import ConfigError, UserError
from tests.data.conftest import random_image, shared, write_image


def test_real_split_files_parse():
    ravi = shared("miniimagenet", "splits", "ravi")
    for split, rows, classes in (("train", 38400, 64), ("val", 9600, 16), ("test", 12000, 20)):
        parsed = miniimagenet.read_split_csv(ravi / f"{split}.csv")
        assert len(parsed) == rows and len({c for _, c in parsed}) == classes
        assert parsed[0][0].endswith(".jpg") and parsed[0][0].startswith(parsed[0][1])
    vinyals = shared("miniimagenet", "splits", "vinyals")
    for split, rows, classes in (("train", 36000, 60), ("test", 12000, 20), ("trainval", 48000, 80)):
        parsed = miniimagenet.read_split_csv(vinyals / f"{split}.csv")  # CRLF / trailing blank line
        assert len(parsed) == rows and len({c for _, c in parsed}) == classes
        assert all(not f.endswith("\r") and not c.endswith("\r") for f, c in parsed[:5])


@pytest.fixture
def csv_root(tmp_path):
    """3 classes x 4 JPEGs of varied sizes in the Ravi layout (header, CRLF, blank last line)."""
    rng = np.random.default_rng(0)
    rows = []
    for c in ("n03000000", "n01000000", "n02000000"):
        for i in range(4):
            name = f"{c}{i:08d}.jpg"
            write_image(tmp_path / "images" / name, random_image(rng, 90 + 7 * i, 100 - 5 * i), quality=95)
            rows.append(f"{name},{c}")
    split = tmp_path / "splits" / "ravi" / "test.csv"
    split.parent.mkdir(parents=True)
    split.write_bytes(("filename,label\r\n" + "\r\n".join(rows) + "\r\n\r\n").encode())
    return tmp_path


def test_csv_folder_reader(csv_root):
    ds = load_dataset("miniimagenet", csv_root, "test", cache_dir=csv_root / "cache")
    assert ds.images.shape == (12, 3, 84, 84) and ds.images.dtype == np.uint8
    assert ds.class_names == ["n01000000", "n02000000", "n03000000"]
    assert ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    with Image.open(csv_root / "images" / "n0100000000000002.jpg") as im:
        expected = np.asarray(im.convert("RGB").resize((84, 84), Image.Resampling.LANCZOS))
    assert np.array_equal(ds.images[2].transpose(1, 2, 0), expected)
    small = miniimagenet.read(csv_root, "test", image_size=32, resample="bilinear")
    assert small.images.shape == (12, 3, 32, 32)


def test_csv_errors(csv_root, tmp_path):
    (csv_root / "images" / "n0200000000000001.jpg").unlink()
    with pytest.raises(UserError, match="1 of 12 images") as err:
        miniimagenet.read(csv_root, "test")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no canonical download"):
        miniimagenet.read(tmp_path / "empty", "val")
    with pytest.raises(ConfigError, match="train, val, test"):
        miniimagenet.read(csv_root, "valid")
    bad = tmp_path / "bad.csv"
    bad.write_text("a.jpg,n1,extra\n")
    with pytest.raises(UserError, match="3 fields"):
        miniimagenet.read(csv_root, "test", split_file=bad)


def _cache_pickle(path, images, class_dict, protocol=4):
    with open(path, "wb") as f:
        pickle.dump({"image_data": images, "class_dict": class_dict}, f, protocol=protocol)


def test_pickle_cache_format(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(9, 84, 84, 3), dtype=np.uint8)
    class_dict = {"n0300": [0, 4, 8], "n0100": [1, 2, 3], "n0200": [5, 6, 7]}
    _cache_pickle(tmp_path / "mini-imagenet-cache-val.pkl", images, class_dict, protocol=2)
    ds = load_dataset("miniimagenet", tmp_path, "val", cache_dir=tmp_path / "cache")
    assert ds.class_names == ["n0100", "n0200", "n0300"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    order = [1, 2, 3, 5, 6, 7, 0, 4, 8]
    assert np.array_equal(ds.images, images[order].transpose(0, 3, 1, 2))


def test_gidaris_pickle_format(tmp_path):
    images = np.arange(4 * 84 * 84 * 3, dtype=np.uint32).astype(np.uint8).reshape(4, 84, 84, 3)
    with open(tmp_path / "mini-imagenet-cache-test.pkl", "wb") as f:
        pickle.dump({b"data": images, b"labels": [7, 3, 7, 3]}, f, protocol=2)
    ds = miniimagenet.read(tmp_path, "test")
    assert ds.class_names == ["3", "7"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert np.array_equal(ds.images, images[[1, 3, 0, 2]].transpose(0, 3, 1, 2))


def test_pickle_errors(tmp_path):
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    _cache_pickle(path, np.zeros((2, 84, 84, 3), np.uint8), {"a": [0, 5]})
    with pytest.raises(UserError, match="outside"):
        miniimagenet.read(tmp_path, "train")
    _cache_pickle(path, np.zeros((2, 84, 84), np.float32), {"a": [0, 1]})
    with pytest.raises(UserError, match="uint8"):
        miniimagenet.read(tmp_path, "train")
    with open(path, "wb") as f:
        pickle.dump({"image_data": np.zeros((1, 84, 84, 3), np.uint8), "class_dict": {"a": [0]},
                     "hook": pickle.Pickler}, f)
    with pytest.raises(UserError, match="not a plain data pickle"):
        miniimagenet.read(tmp_path, "train")
    with pytest.raises(UserError, match="mini-imagenet-cache-val.pkl"):
        miniimagenet.read(tmp_path, "val", format="pickle")
