"""CUB-200-2011: a generated tree in the official layout with the real torchmeta class split files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from innerloop.data import cub, load_dataset
from innerloop.errors import ConfigError, UserError
from tests.data.conftest import random_image, shared, write_image


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    """All 200 class folders (2 small JPEGs each, one grayscale) plus the real split files."""
    splits = shared("cub", "splits", "torchmeta")
    root = tmp_path_factory.mktemp("cub")
    names = [n for s in ("train", "val", "test") for n in json.loads((splits / f"{s}.json").read_text())]
    rng = np.random.default_rng(0)
    for i, name in enumerate(sorted(names)):
        folder = root / "CUB_200_2011" / "images" / name
        stem = name.split(".", 1)[1]
        write_image(folder / f"{stem}_0002_{i}.jpg", random_image(rng, 30 + i % 7, 40))
        write_image(folder / f"{stem}_0001_{i}.jpg", random_image(rng, 24, 20, channels=1))
    shutil.copytree(splits, root / "splits" / "torchmeta")
    return root


def test_splits_have_the_torchmeta_class_counts(cub_root):
    for split, classes in (("train", 100), ("val", 50), ("test", 50)):
        ds = load_dataset("cub", cub_root, split, cache_dir=cub_root / "cache")
        assert ds.num_classes == classes and ds.images.shape == (2 * classes, 3, 84, 84)
        assert ds.class_names == json.loads((cub_root / "splits" / "torchmeta" / f"{split}.json").read_text())
    val = cub.read(cub_root, "val")
    assert val.class_names[0] == "002.Laysan_Albatross"


def test_images_are_rgb_resized_and_sorted(cub_root):
    ds = cub.read(cub_root, "all", image_size=64)
    assert ds.num_classes == 200 and ds.images.shape == (400, 3, 64, 64)
    first = sorted((cub_root / "CUB_200_2011" / "images" / ds.class_names[0]).iterdir())[0]
    assert "_0001_" in first.name
    with Image.open(first) as im:
        assert im.mode == "L"
        expected = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(ds.images[0].transpose(1, 2, 0), expected)


def test_missing_split_file_or_class_folder(cub_root, tmp_path):
    (tmp_path / "CUB_200_2011" / "images" / "001.Black_footed_Albatross").mkdir(parents=True)
    with pytest.raises(UserError, match="split file not found") as err:
        cub.read(tmp_path, "val")
    assert str(tmp_path / "splits" / "torchmeta" / "val.json") in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="classes of the split are missing"):
        cub.read(tmp_path, "val", split_file=cub_root / "splits" / "torchmeta" / "val.json")
    with pytest.raises(UserError, match="innerloop data download cub"):
        cub.read(tmp_path / "none", "train")
    with pytest.raises(ConfigError, match="no split"):
        cub.read(cub_root, "holdout")
