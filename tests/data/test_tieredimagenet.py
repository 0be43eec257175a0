"""tieredImageNet: small generated files in the authors' release format (PNG pickle + labels pickle)."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from innerloop.data import load_dataset, tieredimagenet
from innerloop.errors import ConfigError, UserError
from tests.data.conftest import random_image


def _png(array: np.ndarray) -> np.ndarray:
    """PNG bytes as a uint8 column vector, like ``cv2.imencode('.png', img)[1]``."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8).reshape(-1, 1)


@pytest.fixture
def tiered(tmp_path):
    """``val`` split: 3 classes (2 super-classes) x 4 images, Python-2 style bytes keys, protocol 2."""
    rng = np.random.default_rng(0)
    images = np.stack([random_image(rng, 84, 84) for _ in range(12)])
    specific = np.array([2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1], dtype=np.int32)
    general = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0], dtype=np.int32)
    folder = tmp_path / "tiered-imagenet"
    folder.mkdir()
    with open(folder / "val_images_png.pkl", "wb") as f:
        pickle.dump([_png(im) for im in images], f, protocol=2)
    labels = {b"label_specific": specific, b"label_general": general,
              b"label_specific_str": [b"goldfish", b"tench", b"eel"], b"label_general_str": [b"fish", b"other"]}
    with open(folder / "val_labels.pkl", "wb") as f:
        pickle.dump(labels, f, protocol=2)
    return tmp_path, images, specific, general


def test_png_pickle_reader(tiered):
    root, images, specific, _ = tiered
    ds = load_dataset("tieredimagenet", root, "val", cache_dir=root / "cache")
    assert ds.images.shape == (12, 3, 84, 84)
    assert np.array_equal(ds.images, images.transpose(0, 3, 1, 2))
    assert ds.labels.tolist() == specific.tolist()
    assert ds.class_names == ["goldfish", "tench", "eel"]


def test_general_labels_and_resize(tiered):
    root, _, _, general = tiered
    ds = tieredimagenet.read(root, "val", labels="general", image_size=42)
    assert ds.labels.tolist() == general.tolist() and ds.class_names == ["fish", "other"]
    assert ds.images.shape == (12, 3, 42, 42)
    with pytest.raises(ConfigError, match="specific"):
        tieredimagenet.read(root, "val", labels="both")


def test_npz_is_bgr_by_default(tiered):
    root, images, specific, _ = tiered
    folder = root / "tiered-imagenet"
    (folder / "val_images_png.pkl").unlink()
    np.savez(folder / "val_images.npz", images=images[..., ::-1])  # what the authors' cv2 decompress writes
    assert np.array_equal(tieredimagenet.read(root, "val").images, images.transpose(0, 3, 1, 2))
    np.savez(folder / "val_images.npz", images=images)
    rgb = tieredimagenet.read(root, "val", npz_channel_order="rgb")
    assert np.array_equal(rgb.images, images.transpose(0, 3, 1, 2))


def test_mismatch_missing_and_unsafe(tiered, tmp_path):
    root, images, _, _ = tiered
    folder = root / "tiered-imagenet"
    with open(folder / "val_images_png.pkl", "wb") as f:
        pickle.dump([_png(im) for im in images[:5]], f, protocol=2)
    with pytest.raises(UserError, match="do not belong together"):
        tieredimagenet.read(root, "val")
    with pytest.raises(UserError, match="no canonical download") as err:
        tieredimagenet.read(tmp_path / "nothing", "test")
    assert "\n" not in str(err.value)
    with open(folder / "val_images_png.pkl", "wb") as f:
        pickle.dump([b"not a png"], f)
    with pytest.raises(UserError, match="cannot decode"):
        tieredimagenet.read(root, "val")
    with open(folder / "val_labels.pkl", "wb") as f:
        pickle.dump({"label_specific": np.zeros(1, np.int64), "x": eval}, f)
    with pytest.raises(UserError, match="not a plain data pickle"):
        tieredimagenet.read(root, "val")
