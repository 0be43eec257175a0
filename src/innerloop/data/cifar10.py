"""CIFAR-10: 32x32 RGB images in 10 classes, as ``[N, 3, 32, 32]`` uint8.

Two on-disk formats (``format="auto"`` picks the first one found):

* ``"pickle"`` -- the official ``cifar-10-batches-py`` folder (in ``root`` or ``root`` itself):
  ``data_batch_1`` .. ``data_batch_5`` (train, 50,000) and ``test_batch`` (10,000), each a pickled
  dict with ``data`` (uint8 ``[n, 3072]``, rows = 1024 red, 1024 green, 1024 blue values, each plane
  row-major) and ``labels`` (n ints); ``batches.meta`` gives ``label_names``. The pickles are
  loaded with :mod:`innerloop.data.safe_pickle` (no arbitrary globals) and then checked to be a
  dict of exactly those arrays/lists before use.
* ``"sheets"`` -- ConvNetJS's lossless PNG sheets (in ``root/convnetjs`` or ``root``):
  ``cifar10_batch_K.png`` is RGB, 1024 wide, one image per row (pixel k of a row is y=k//32,
  x=k%32); sheets 0..49 are the training images in order (all present ones, from 0 up), sheet 50
  the test images; ``cifar10_labels.js`` holds ``var labels=[...]`` with training labels first and
  the 10,000 test labels from index 50,000.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from innerloop.data import safe_pickle
from innerloop.data.base import ImageDataset
from innerloop.data.imaging import image_hw, open_image, resample_filter, resize_nchw
from innerloop.errors import ConfigError, UserError

SPLITS = ("train", "test")
FORMATS = ("auto", "pickle", "sheets")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PICKLE_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
TRAIN_IMAGES = 50_000
_TEST_SHEET = 50


def _pickle_dir(root: Path) -> Path | None:
    for d in (root / "cifar-10-batches-py", root):
        if (d / "data_batch_1").is_file() or (d / "test_batch").is_file():
            return d
    return None


def _sheet_dir(root: Path) -> Path | None:
    for d in (root / "convnetjs", root):
        if (d / "cifar10_labels.js").is_file():
            return d
    return None


def _resolve(root: Path, split: str, fmt: str) -> tuple[str, Path]:
    if split not in SPLITS:
        raise ConfigError(f"CIFAR-10 has no split {split!r}: use one of {', '.join(SPLITS)}")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown CIFAR-10 format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt in ("auto", "pickle") and (d := _pickle_dir(root)) is not None:
        return "pickle", d
    if fmt in ("auto", "sheets") and (d := _sheet_dir(root)) is not None:
        return "sheets", d
    raise UserError(f"CIFAR-10 not found under {root}: expected cifar-10-batches-py/ (the python version) "
                    f"or convnetjs/cifar10_batch_K.png sheets; run 'innerloop data download cifar10 --root {root}'")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` pickle as (uint8 ``[n, 3, 32, 32]``, int64 ``[n]``), after checking its structure."""
    batch = safe_pickle.str_keys(safe_pickle.load(path, "CIFAR-10 batch"), path, "CIFAR-10 batch")
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"CIFAR-10 batch {path} has no uint8 [n, 3072] 'data' array; is it a cifar-10-batches-py file?")
    if not isinstance(labels, (list, np.ndarray)):
        raise UserError(f"CIFAR-10 batch {path} has no 'labels' list (a CIFAR-100 file has 'fine_labels'); "
                        "is it a CIFAR-10 file?")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise UserError(f"CIFAR-10 batch {path} has non-integer labels; is it a CIFAR-10 file?") from None
    if labels.shape != (len(data),) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise UserError(f"CIFAR-10 batch {path}: {len(labels)} labels in 0..9 expected for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


def _class_names(directory: Path) -> list[str]:
    meta_path = directory / "batches.meta"
    if not meta_path.is_file():
        return list(CLASSES)
    meta = safe_pickle.str_keys(safe_pickle.load(meta_path, "CIFAR-10 batches.meta"), meta_path, "CIFAR-10 batches.meta")
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise UserError(f"CIFAR-10 {meta_path} has no list of 10 'label_names'; is it the right file?")
    return [safe_pickle.as_text(n) for n in names]


def _read_pickles(directory: Path, split: str) -> ImageDataset:
    parts = []
    for name in PICKLE_FILES[split]:
        path = directory / name
        if not path.is_file():
            raise UserError(f"CIFAR-10 file {path} is missing; run 'innerloop data download cifar10'")
        parts.append(read_batch(path))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageDataset(np.ascontiguousarray(images), labels, _class_names(directory), f"cifar10-{split}")


def read_sheet(path: Path) -> np.ndarray:
    """One ConvNetJS sheet as uint8 ``[rows, 3, 32, 32]``."""
    im = open_image(path, str(path))
    if im.width != 1024:
        raise UserError(f"CIFAR-10 sheet {path} is {im.width} pixels wide, expected 1024 (one 32x32 image per row)")
    hwc = np.asarray(im.convert("RGB"), dtype=np.uint8).reshape(im.height, 32, 32, 3)
    return hwc.transpose(0, 3, 1, 2)


def sheet_labels(directory: Path) -> np.ndarray:
    """All labels of ``cifar10_labels.js`` (training images first, test from index 50,000)."""
    path = directory / "cifar10_labels.js"
    labels = np.array([int(x) for x in re.findall(r"\d+", path.read_text())], dtype=np.int64)
    if len(labels) and labels.max() > 9:
        raise UserError(f"CIFAR-10 labels file {path} has a label above 9; is it the right file?")
    return labels


def _sheet_files(directory: Path, split: str) -> list[Path]:
    if split == "test":
        return [directory / f"cifar10_batch_{_TEST_SHEET}.png"]
    files = []
    for k in range(_TEST_SHEET):
        path = directory / f"cifar10_batch_{k}.png"
        if not path.is_file():
            break
        files.append(path)
    return files


def _read_sheets(directory: Path, split: str) -> ImageDataset:
    files = _sheet_files(directory, split)
    if not files or not files[0].is_file():
        raise UserError(f"CIFAR-10 {split} sheet {files[0] if files else directory / 'cifar10_batch_0.png'} not found")
    images = np.concatenate([read_sheet(p) for p in files])
    all_labels = sheet_labels(directory)
    start = TRAIN_IMAGES if split == "test" else 0
    labels = all_labels[start:start + len(images)]
    if len(labels) != len(images):
        raise UserError(f"CIFAR-10 labels file in {directory} has too few labels for the {len(images)} {split} images")
    return ImageDataset(np.ascontiguousarray(images), labels, list(CLASSES), f"cifar10-{split}")


def read(root: str | Path, split: str, *, format: str = "auto", image_size: int | None = 32,
         resample: str = "lanczos") -> ImageDataset:
    """CIFAR-10 ``split`` (``train``/``test``) as uint8 ``[N, 3, 32, 32]`` in file order.

    ``image_size`` other than 32 resizes every image with Pillow's ``resample`` filter.
    """
    fmt, directory = _resolve(Path(root), split, format)
    ds = _read_pickles(directory, split) if fmt == "pickle" else _read_sheets(directory, split)
    ds.images = resize_nchw(ds.images, image_hw(image_size), resample_filter(resample))
    return ds


def source_files(root: str | Path, split: str, *, format: str = "auto", **_: object) -> list[Path]:
    """The batch pickles (and ``batches.meta``) or the sheets and labels file that ``read`` uses."""
    fmt, directory = _resolve(Path(root), split, format)
    if fmt == "pickle":
        return [directory / n for n in PICKLE_FILES[split]] + [directory / "batches.meta"]
    return _sheet_files(directory, split) + [directory / "cifar10_labels.js"]
