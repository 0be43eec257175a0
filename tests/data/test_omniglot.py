"""Omniglot reader on the real zips: Vinyals split counts, preprocessing, rotations, other protocols."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from innerloop.data import load_dataset, omniglot
from innerloop.errors import ConfigError, UserError
from tests.data.conftest import shared


@pytest.fixture(scope="module")
def root():
    return shared("omniglot")


@pytest.fixture(scope="module")
def vinyals(root, tmp_path_factory):
    """train + val + test of the Vinyals split: every Omniglot character decoded exactly once."""
    cache = tmp_path_factory.mktemp("omniglot-cache")
    splits = {s: load_dataset("omniglot", root, s, cache_dir=cache) for s in ("train", "val", "test")}
    return splits, cache


def _split_lines(root, split):
    return [ln for ln in (root / "splits" / "vinyals" / f"{split}.txt").read_text().splitlines() if ln]


def test_vinyals_counts(vinyals):
    splits, _ = vinyals
    for split, chars in (("train", 1028), ("val", 172), ("test", 423)):
        ds = splits[split]
        assert ds.num_classes == chars * 4
        assert ds.images.shape == (chars * 4 * 20, 1, 28, 28) and ds.images.dtype == np.uint8
        assert np.bincount(ds.labels, minlength=ds.num_classes).tolist() == [20] * (chars * 4)
    assert splits["train"].num_classes == 4112 and len(splits["train"].labels) == 82240


def test_class_names_follow_split_file(root, vinyals):
    splits, _ = vinyals
    for split in ("train", "val", "test"):
        assert splits[split].class_names == _split_lines(root, split)


def test_splits_are_disjoint_and_trainval_is_train_plus_val(root, vinyals):
    splits, _ = vinyals
    chars = {s: {n.rsplit("/", 1)[0] for n in splits[s].class_names} for s in splits}
    assert not chars["train"] & chars["val"] and not chars["train"] & chars["test"] and not chars["val"] & chars["test"]
    assert len(chars["train"] | chars["val"] | chars["test"]) == 1623
    assert set(_split_lines(root, "trainval")) == set(_split_lines(root, "train")) | set(_split_lines(root, "val"))


def test_preprocessing_inverts_and_resizes_with_lanczos(root, vinyals):
    ds = vinyals[0]["train"]
    # class 0 is Angelic/character01/rot000; its first drawing is the alphabetically first PNG of it
    with zipfile.ZipFile(root / "images_evaluation.zip") as z:
        first = sorted(n for n in z.namelist() if "/Angelic/character01/" in n and n.endswith(".png"))[0]
        im = Image.open(io.BytesIO(z.read(first)))
        assert im.mode == "1" and im.size == (105, 105)
        expected = np.asarray(Image.fromarray(255 - np.asarray(im.convert("L"))).resize((28, 28), Image.Resampling.LANCZOS))
    assert np.array_equal(ds.images[0, 0], expected)
    # stroke bright on a dark background: corners are 0, most pixels are background
    assert (ds.images[:, 0, 0, 0] == 0).mean() > 0.99 and ds.images.max() == 255
    assert (ds.images[:2000] == 0).mean() > 0.6


def test_rotated_classes_are_rot90_of_the_resized_images(vinyals):
    ds = vinyals[0]["train"]
    idx = ds.class_indices()
    base = ds.images[idx[0]]
    for k in (1, 2, 3):
        assert ds.class_names[k].endswith(f"rot{90 * k:03d}")
        assert np.array_equal(ds.images[idx[k]], np.rot90(base, k, axes=(2, 3)))


def test_second_load_comes_from_the_cache(root, vinyals, monkeypatch):
    splits, cache = vinyals
    monkeypatch.setattr(omniglot, "decode_drawing", lambda *a, **k: pytest.fail("decoded again instead of using the cache"))
    start = time.perf_counter()
    again = load_dataset("omniglot", root, "train", cache_dir=cache)
    assert time.perf_counter() - start < 3.0
    assert np.array_equal(again.images, splits["train"].images) and np.array_equal(again.labels, splits["train"].labels)
    assert again.class_names == splits["train"].class_names


def _small_split(tmp_path, lines):
    path = tmp_path / "small.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rotations_false_keeps_one_class_per_character(root, tmp_path):
    split = _small_split(tmp_path, [f"Angelic/character0{c}/rot{r:03d}" for c in (1, 2) for r in (0, 90, 180, 270)])
    ds = omniglot.read(root, "train", split_file=split, rotations=False)
    assert ds.class_names == ["Angelic/character01/rot000", "Angelic/character02/rot000"]
    assert ds.images.shape == (40, 1, 28, 28)


def test_extracted_folders_equal_the_zip(root, tmp_path):
    chars = ["Angelic/character03", "Latin/character05"]
    for set_name in omniglot.SETS:
        with zipfile.ZipFile(root / f"{set_name}.zip") as z:
            for name in z.namelist():
                if any(f"/{c}/" in name for c in chars) and name.endswith(".png"):
                    out = tmp_path / "tree" / set_name / "/".join(name.split("/")[-3:])
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(name))
    split = _small_split(tmp_path, [f"{c}/rot{r:03d}" for c in chars for r in (0, 180)])
    from_tree = omniglot.read(tmp_path / "tree", "train", split_file=split)
    from_zip = omniglot.read(root, "train", split_file=split)
    assert from_tree.images.shape == (80, 1, 28, 28)
    assert np.array_equal(from_tree.images, from_zip.images) and from_tree.class_names == from_zip.class_names


def test_image_size_and_resample_options(root, tmp_path):
    split = _small_split(tmp_path, ["Latin/character01/rot000"])
    ds = omniglot.read(root, "train", split_file=split, image_size=14, resample="bilinear")
    assert ds.images.shape == (20, 1, 14, 14)
    split = _small_split(tmp_path, ["Latin/character01/rot000", "Latin/character01/rot090"])
    full = omniglot.read(root, "train", split_file=split, image_size=None)
    assert full.images.shape == (40, 1, 105, 105) and set(np.unique(full.images)) <= {0, 255}
    # rot090 is counter-clockwise, as PIL's Image.rotate(90) (Prototypical Networks' augmentation)
    assert np.array_equal(full.images[20, 0], np.asarray(Image.fromarray(full.images[0, 0]).rotate(90)))
    with pytest.raises(ConfigError, match="square"):
        omniglot.read(root, "train", split_file=split, image_size=[28, 20])
    with pytest.raises(ConfigError, match="resample"):
        omniglot.read(root, "train", split_file=split, resample="fancy")


def _characters(root):
    chars = {}
    for name, path in omniglot._find_sets(root).items():
        for char, members in omniglot._ImageSet(path).characters().items():
            chars[char] = (name, members)
    return chars


def test_maml_protocol_shuffles_1623_characters_with_a_seed(root):
    chars = _characters(root)
    assert len(chars) == 1623 and all(len(m) == 20 for _, m in chars.values())
    train = omniglot.class_list(root, "train", "maml", False, None, 1, chars)
    test = omniglot.class_list(root, "test", "maml", False, None, 1, chars)
    assert len(train) == 1200 and len(test) == 423 and not {c for c, _ in train} & {c for c, _ in test}
    assert train == omniglot.class_list(root, "train", "maml", False, None, 1, chars)
    assert train != omniglot.class_list(root, "train", "maml", False, None, 2, chars)
    assert len(omniglot.class_list(root, "train", "maml", True, None, 1, chars)) == 4800


def test_lake_and_torchmeta_protocols(root):
    chars = _characters(root)
    assert len(omniglot.class_list(root, "train", "lake", False, None, 0, chars)) == 964
    assert len(omniglot.class_list(root, "test", "lake", False, None, 0, chars)) == 659
    for split, n in (("train", 1028), ("val", 172), ("test", 423)):
        meta = omniglot.class_list(root, split, "torchmeta", True, None, 0, chars)
        vin = omniglot.class_list(root, split, "vinyals", True, None, 0, chars)
        assert len(meta) == 4 * n and set(meta) == set(vin)


def test_missing_split_file_is_one_line_naming_the_path(root, tmp_path):
    for name in ("images_background.zip", "images_evaluation.zip"):
        (tmp_path / name).symlink_to(root / name)
    with pytest.raises(UserError) as err:
        omniglot.read(tmp_path, "val")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "splits" / "vinyals" / "val.txt") in msg


def test_bad_arguments_and_missing_or_corrupt_data(root, tmp_path):
    with pytest.raises(ConfigError, match="protocol"):
        omniglot.read(root, "train", protocol="nope")
    with pytest.raises(ConfigError, match="no split 'val'"):
        omniglot.read(root, "val", protocol="maml")
    with pytest.raises(UserError, match="innerloop data download omniglot"):
        omniglot.read(tmp_path, "train")
    data = (root / "images_background.zip").read_bytes()
    (tmp_path / "images_background.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated") as err:
        omniglot.read(tmp_path, "train", protocol="lake")
    assert "\n" not in str(err.value)
    bad = _small_split(tmp_path, ["Angelic/character01"])
    with pytest.raises(UserError, match="line 1"):
        omniglot.read(root, "train", split_file=bad)
    unknown = _small_split(tmp_path, ["Klingon/character01/rot000"])
    with pytest.raises(UserError, match="Klingon/character01"):
        omniglot.read(root, "train", split_file=unknown)


def test_zip_of_shared_data_is_untouched(root, tmp_path):
    """Reading never writes next to the source files."""
    before = sorted(p.name for p in root.iterdir())
    omniglot.read(root, "train", split_file=_small_split(tmp_path, ["Latin/character02/rot000"]))
    assert sorted(p.name for p in root.iterdir()) == before
