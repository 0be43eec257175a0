"""miniImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 split): 100 classes x 600 images, 84x84 RGB.

There is no canonical download; put one of these under ``root`` (``format="auto"`` takes the
pickle when present):

* ``"csv"`` -- split files ``filename,label`` (header line optional, CRLF or blank lines tolerated):
  ``root/splits/ravi/{split}.csv`` or ``root/{split}.csv`` (or ``split_file``), and the images in
  ``root/images/<filename>`` (or ``images_dir``). Works for the Ravi split (``n0153282900000005.jpg``)
  and the Vinyals split (``n01614925_1001.JPEG``). Images are converted to RGB and resized to
  ``image_size`` (default 84) with Pillow (default LANCZOS).
* ``"pickle"`` -- ``root/mini-imagenet-cache-{split}.pkl`` (the widely shared cache): a dict with
  ``image_data`` (uint8 ``[N, 84, 84, 3]``) and ``class_dict`` (``{class: [indices]}``); also the
  Gidaris-style dict with ``data`` (uint8 ``[N, H, W, 3]``) and ``labels`` (N ints). Loaded with
  :mod:`innerloop.data.safe_pickle` (no arbitrary globals) and checked before use.

Classes are sorted by name (``n01532829`` ...); images keep file/index order within a class.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from innerloop.data import safe_pickle
from innerloop.data.base import ImageDataset
from innerloop.data.imaging import decode, required_hw, resample_filter, resize_array, to_nchw
from innerloop.errors import ConfigError, UserError

SPLITS = ("train", "val", "test")
FORMATS = ("auto", "csv", "pickle")
_WHERE = ("miniImageNet has no canonical download: put the images in {root}/images/ with the split csv files in "
          "{root}/splits/ravi/, or mini-imagenet-cache-{{train,val,test}}.pkl in {root}")


def _pickle_path(root: Path, split: str) -> Path:
    return root / f"mini-imagenet-cache-{split}.pkl"


def _csv_path(root: Path, split: str, split_file: str | Path | None) -> Path:
    if split_file is not None:
        return Path(split_file)
    for path in (root / "splits" / "ravi" / f"{split}.csv", root / f"{split}.csv"):
        if path.is_file():
            return path
    return root / "splits" / "ravi" / f"{split}.csv"


def _resolve(root: Path, split: str, fmt: str, split_file: str | Path | None) -> tuple[str, Path]:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown miniImageNet format {fmt!r}: use one of {', '.join(FORMATS)}")
    if split_file is None and split not in SPLITS:
        raise ConfigError(f"miniImageNet has no split {split!r}: use one of {', '.join(SPLITS)} (or pass split_file)")
    if fmt in ("auto", "pickle") and split_file is None and _pickle_path(root, split).is_file():
        return "pickle", _pickle_path(root, split)
    path = _csv_path(root, split, split_file)
    if fmt == "pickle" or not path.is_file():
        missing = _pickle_path(root, split) if fmt == "pickle" else path
        raise UserError(f"miniImageNet {split} not found ({missing} is missing); " + _WHERE.format(root=root))
    return "csv", path


def read_split_csv(path: Path) -> list[tuple[str, str]]:
    """``[(filename, label)]`` rows of a split csv, without its header and blank lines."""
    rows = []
    with open(path, newline="") as f:
        for number, row in enumerate(csv.reader(f), 1):
            row = [c.strip() for c in row]
            if not row or not any(row):
                continue
            if len(row) != 2:
                raise UserError(f"miniImageNet split file {path} line {number} has {len(row)} fields, "
                                "expected filename,label")
            if number == 1 and row[0].lower() == "filename":
                continue
            rows.append((row[0], row[1]))
    if not rows:
        raise UserError(f"miniImageNet split file {path} lists no images")
    return rows


def _group(labels: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Class names (sorted), int labels, and an order that groups images by class (stable)."""
    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[n] for n in labels], dtype=np.int64)
    order = np.argsort(y, kind="stable")
    return names, y, order


def _read_csv(root: Path, split: str, path: Path, images_dir: str | Path | None,
              size: tuple[int, int], resample: str) -> ImageDataset:
    rows = read_split_csv(path)
    folder = Path(images_dir) if images_dir is not None else root / "images"
    missing = [f for f, _ in rows if not (folder / f).is_file()]
    if missing:
        raise UserError(f"miniImageNet: {len(missing)} of {len(rows)} images listed in {path} are missing from "
                        f"{folder} (first: {missing[0]}); " + _WHERE.format(root=root))
    names, y, order = _group([label for _, label in rows])
    filt = resample_filter(resample)
    images = np.empty((len(rows), size[0], size[1], 3), dtype=np.uint8)
    for out, i in enumerate(order):
        images[out] = decode(folder / rows[i][0], str(folder / rows[i][0]), mode="RGB", size=size, resample=filt)
    return ImageDataset(to_nchw(images), y[order], names, f"miniimagenet-{split}")


def _read_pickle(split: str, path: Path, size: tuple[int, int], resample: str) -> ImageDataset:
    what = "miniImageNet pickle"
    data = safe_pickle.str_keys(safe_pickle.load(path, what), path, what)
    if "image_data" in data and "class_dict" in data:
        images, class_dict = data["image_data"], data["class_dict"]
        if not isinstance(class_dict, dict):
            raise UserError(f"{what} {path}: 'class_dict' should be a dict of class -> indices")
        names = sorted(safe_pickle.as_text(k) for k in class_dict)
        by_name = {safe_pickle.as_text(k): v for k, v in class_dict.items()}
        try:
            groups = [np.asarray(by_name[n], dtype=np.int64).reshape(-1) for n in names]
        except (TypeError, ValueError):
            raise UserError(f"{what} {path}: 'class_dict' values should be lists of image indices") from None
        order = np.concatenate(groups) if groups else np.zeros(0, np.int64)
        labels = np.repeat(np.arange(len(names), dtype=np.int64), [len(g) for g in groups])
    elif "data" in data and "labels" in data:
        images = data["data"]
        try:
            raw = [safe_pickle.as_text(v) if isinstance(v, (str, bytes)) else int(v) for v in data["labels"]]
        except (TypeError, ValueError):
            raise UserError(f"{what} {path}: 'labels' should be a list of class ids") from None
        keys = sorted(set(raw), key=lambda v: (isinstance(v, str), v))
        index = {k: i for i, k in enumerate(keys)}
        y = np.array([index[v] for v in raw], dtype=np.int64)
        order = np.argsort(y, kind="stable")
        labels, names = y[order], [str(k) for k in keys]
    else:
        raise UserError(f"{what} {path} has keys {sorted(data)}; expected image_data + class_dict (or data + labels)")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise UserError(f"{what} {path}: images should be a uint8 [N, H, W, 3] array")
    if len(order) and (order.min() < 0 or order.max() >= len(images)):
        raise UserError(f"{what} {path}: class indices point outside the {len(images)} images")
    filt = resample_filter(resample)
    picked = np.stack([resize_array(images[i], size, filt) for i in order]) if len(order) else \
        np.zeros((0, size[0], size[1], 3), np.uint8)
    return ImageDataset(to_nchw(picked), labels, names, f"miniimagenet-{split}")


def read(
    root: str | Path,
    split: str,
    *,
    image_size: int = 84,
    format: str = "auto",
    split_file: str | Path | None = None,
    images_dir: str | Path | None = None,
    resample: str = "lanczos",
) -> ImageDataset:
    """miniImageNet ``split`` as uint8 ``[N, 3, image_size, image_size]``, grouped by class."""
    root = Path(root)
    fmt, path = _resolve(root, split, format, split_file)
    size = required_hw(image_size, "miniImageNet")
    if fmt == "pickle":
        return _read_pickle(split, path, size, resample)
    return _read_csv(root, split, path, images_dir, size, resample)


def source_files(root: str | Path, split: str, *, format: str = "auto", split_file: str | Path | None = None,
                 images_dir: str | Path | None = None, **_: object) -> list[Path]:
    """The pickle, or the split csv and every image it lists."""
    root = Path(root)
    fmt, path = _resolve(root, split, format, split_file)
    if fmt == "pickle":
        return [path]
    folder = Path(images_dir) if images_dir is not None else root / "images"
    return [path] + [folder / f for f, _ in read_split_csv(path)]
