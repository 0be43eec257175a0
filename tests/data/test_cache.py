"""The decoded-dataset cache: keys, reuse, invalidation, atomic writes, corrupt entries."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from innerloop.data import cache, folder, load_dataset
from innerloop.data.base import ImageDataset
from tests.data.conftest import random_image, write_image


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(3):
            write_image(tmp_path / "tree" / c / f"{i}.png", random_image(rng, 12, 12))
    return tmp_path / "tree"


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in (cache_dir / "folder").iterdir() if not p.name.startswith("."))


def test_cache_dir_argument_env_and_default(monkeypatch, tmp_path):
    assert cache.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "env"))
    assert cache.cache_root() == tmp_path / "env"
    monkeypatch.delenv("INNERLOOP_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "innerloop"


def test_env_cache_is_used_when_no_argument(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "envcache"))
    load_dataset("folder", tree, "all", image_size=8)
    assert len(_entries(tmp_path / "envcache")) == 1


def test_reuse_without_decoding(tree, tmp_path, monkeypatch):
    first = load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")
    monkeypatch.setattr(folder, "decode", lambda *a, **k: pytest.fail("decoded despite a valid cache entry"))
    again = load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")
    assert np.array_equal(first.images, again.images) and np.array_equal(first.labels, again.labels)
    assert again.class_names == ["a", "b"] and again.name == first.name
    mapped = load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c", mmap=True)
    assert isinstance(mapped.images, np.memmap) and np.array_equal(mapped.images, first.images)


def test_defaults_and_explicit_options_share_an_entry_but_new_options_do_not(tree, tmp_path):
    load_dataset("folder", tree, "all", cache_dir=tmp_path / "c")
    load_dataset("folder", tree, "all", image_size=84, mode="RGB", cache_dir=tmp_path / "c")
    assert len(_entries(tmp_path / "c")) == 1
    load_dataset("folder", tree, "all", image_size=10, cache_dir=tmp_path / "c")
    assert len(_entries(tmp_path / "c")) == 2


def test_changed_source_rebuilds_and_drops_the_superseded_entry(tree, tmp_path):
    old = load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")
    (old_entry,) = _entries(tmp_path / "c")
    write_image(tree / "a" / "0.png", np.full((12, 12, 3), 255, np.uint8))
    os.utime(tree / "a" / "0.png", ns=(1, 1))
    new = load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")
    (new_entry,) = _entries(tmp_path / "c")
    assert new_entry != old_entry and (new.images[0] == 255).all() and not (old.images[0] == 255).all()


def test_two_copies_of_a_dataset_keep_their_own_entries(tree, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")
    load_dataset("folder", copy, "all", image_size=8, cache_dir=tmp_path / "c")
    assert len(_entries(tmp_path / "c")) == 2
    monkeypatch.setattr(folder, "decode", lambda *a, **k: pytest.fail("an entry was evicted by the other copy"))
    load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")


@pytest.mark.parametrize("damage", ["truncate_images", "garble_meta", "edit_labels", "drop_labels"])
def test_corrupt_entry_is_rebuilt_with_a_warning(tree, tmp_path, damage):
    good = load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")
    (entry,) = _entries(tmp_path / "c")
    if damage == "truncate_images":
        data = (entry / "images.npy").read_bytes()
        (entry / "images.npy").write_bytes(data[:-50])
    elif damage == "garble_meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "edit_labels":
        np.save(entry / "labels.npy", np.zeros(6, np.int64))
    else:
        (entry / "labels.npy").unlink()
    with pytest.warns(RuntimeWarning, match="corrupt"):
        again = load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")
    assert np.array_equal(again.images, good.images) and np.array_equal(again.labels, good.labels)
    assert cache.load(entry) is not None


def test_interrupted_write_leaves_no_entry(tree, tmp_path, monkeypatch):
    real_save = np.save

    def interrupted(path, arr, **kw):
        if str(path).endswith("labels.npy"):
            raise KeyboardInterrupt
        return real_save(path, arr, **kw)

    monkeypatch.setattr(cache.np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("folder", tree, "all", image_size=8, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c" / "folder").iterdir()) == []


def test_dead_temporaries_are_cleaned_and_live_ones_kept(tmp_path):
    parent = tmp_path / "c" / "x"
    dead = parent / ".tmp-999999999-abc"
    mine = parent / f".tmp-{os.getpid()}-def"
    dead.mkdir(parents=True)
    mine.mkdir()
    ds = ImageDataset(np.zeros((2, 1, 4, 4), np.uint8), np.array([0, 1]), ["p", "q"], "tiny")
    entry = cache.save(ds, parent / "all-1-2")
    assert not dead.exists() and mine.exists()
    loaded = cache.load(entry)
    assert loaded is not None and loaded.class_names == ["p", "q"]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["images_shape"] == [2, 1, 4, 4]


def test_save_over_an_unreadable_entry_replaces_it(tmp_path):
    ds = ImageDataset(np.ones((1, 1, 2, 2), np.uint8), np.array([0]), ["only"], "one")
    entry = tmp_path / "e"
    entry.mkdir()
    (entry / "meta.json").write_text("garbage")
    with pytest.warns(RuntimeWarning):
        cache.save(ds, entry)
    assert cache.load(entry).images.sum() == 4


def test_fingerprint_tracks_size_mtime_and_presence(tmp_path):
    f = tmp_path / "f"
    f.write_text("a")
    fp1 = cache.fingerprint([f])
    f.write_text("ab")
    fp2 = cache.fingerprint([f])
    f.unlink()
    assert len({fp1, fp2, cache.fingerprint([f])}) == 3
