"""Class-per-folder trees: sorting, filtering, colour modes, sizes, splits."""

from __future__ import annotations

import numpy as np
import pytest

from innerloop.data import folder, load_dataset
from innerloop.errors import ConfigError, UserError
from tests.data.conftest import random_image, write_image


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "tree"
    write_image(root / "train" / "zebra" / "b.png", random_image(rng, 20, 24))
    write_image(root / "train" / "zebra" / "a.JPG", random_image(rng, 20, 24))
    write_image(root / "train" / "ant" / "x.png", random_image(rng, 20, 24))
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    (root / "train" / "ant" / ".hidden.png").write_bytes(b"junk")
    (root / "train" / ".cache").mkdir()
    write_image(root / "test" / "cat" / "c.png", random_image(rng, 10, 12, channels=1))
    return root


def test_classes_sorted_and_non_images_skipped(tree):
    ds = load_dataset("folder", tree, "train", image_size=[16, 20], cache_dir=tree.parent / "cache")
    assert ds.class_names == ["ant", "zebra"] and ds.labels.tolist() == [0, 1, 1]
    assert ds.images.shape == (3, 3, 16, 20)


def test_grayscale_and_native_size(tree):
    ds = folder.read(tree, "test", image_size=None, mode="grayscale")
    assert ds.images.shape == (1, 1, 10, 12)
    rgb = folder.read(tree, "test", image_size=None)
    assert rgb.images.shape == (1, 3, 10, 12) and np.array_equal(rgb.images[:, 0], ds.images[:, 0])


def test_all_split_mixed_sizes_and_errors(tree, tmp_path):
    with pytest.raises(UserError, match="no images"):
        folder.read(tree, "all")  # class folders 'train'/'test' hold only sub-folders
    write_image(tree / "test" / "cat" / "big.png", np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(ConfigError, match="differ in size"):
        folder.read(tree, "test", image_size=None)
    with pytest.raises(UserError, match="test, train") as err:
        folder.read(tree, "val")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="colour mode"):
        folder.read(tree, "test", mode="cmyk")
    with pytest.raises(ConfigError, match="image_size"):
        folder.read(tree, "test", image_size="big")
    (tree / "test" / "cat" / "c.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match="cannot decode image"):
        folder.read(tree, "test")
