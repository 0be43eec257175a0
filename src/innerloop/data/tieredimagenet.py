"""tieredImageNet (Ren et al. 2018): 608 ImageNet classes in 34 super-classes, 84x84 RGB.

There is no canonical download. Supported is the format of the authors' release
(``renmengye/few-shot-ssl-public``, ``tiered-imagenet.tar``), which most few-shot code reads, in
``root`` or ``root/tiered-imagenet``:

* ``{split}_labels.pkl`` (``split`` = train/val/test: 351/97/160 classes) -- a Python 2 pickled dict
  with ``label_specific`` (int array ``[N]``, class ids ``0..K-1`` within the split),
  ``label_general`` (super-class ids), ``label_specific_str`` / ``label_general_str`` (names). A
  dict with a ``labels`` list instead (MetaOptNet's re-export) is accepted too.
* images, either ``{split}_images_png.pkl`` -- a pickled list of PNG-encoded images (uint8 arrays as
  written by ``cv2.imencode('.png', ...)``, or ``bytes``), decoded here with Pillow as RGB -- or the
  decompressed ``{split}_images.npz`` with an ``images`` uint8 ``[N, 84, 84, 3]`` array. The authors'
  ``decompress`` writes that array with OpenCV, i.e. in **BGR** order, so ``npz_channel_order``
  defaults to ``"bgr"`` (set ``"rgb"`` for an npz you wrote in RGB). The PNG pickle is preferred.

Both pickles load with :mod:`innerloop.data.safe_pickle` (no arbitrary globals) and are checked
before use. ``labels="general"`` uses the 34 super-classes as the classes instead. Images stay in
file order. Train is 448,695 images (about 9.5 GB decoded): build its cache once with
``innerloop data prepare tieredimagenet`` and load it with ``mmap=True``.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from innerloop.data import safe_pickle
from innerloop.data.base import ImageDataset
from innerloop.data.imaging import decode, required_hw, resample_filter, resize_array, to_nchw
from innerloop.data.messages import brief
from innerloop.errors import ConfigError, UserError

SPLITS = ("train", "val", "test")
FORMATS = ("auto", "png", "npz")
_WHERE = ("tieredImageNet has no canonical download: put {split}_images_png.pkl and {split}_labels.pkl "
          "(from the authors' tiered-imagenet.tar) in {root}")


def _folder(root: Path, split: str) -> Path:
    for d in (root, root / "tiered-imagenet"):
        if (d / f"{split}_labels.pkl").is_file():
            return d
    return root


def _resolve(root: Path, split: str, fmt: str) -> tuple[str, Path, Path]:
    """``(format, images file, labels file)``."""
    if split not in SPLITS:
        raise ConfigError(f"tieredImageNet has no split {split!r}: use one of {', '.join(SPLITS)}")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown tieredImageNet format {fmt!r}: use one of {', '.join(FORMATS)}")
    d = _folder(root, split)
    labels = d / f"{split}_labels.pkl"
    png, npz = d / f"{split}_images_png.pkl", d / f"{split}_images.npz"
    if not labels.is_file():
        raise UserError(f"tieredImageNet labels {labels} not found; " + _WHERE.format(split=split, root=root))
    if fmt in ("auto", "png") and png.is_file():
        return "png", png, labels
    if fmt in ("auto", "npz") and npz.is_file():
        return "npz", npz, labels
    want = {"png": png, "npz": npz}.get(fmt, png)
    raise UserError(f"tieredImageNet images {want} not found; " + _WHERE.format(split=split, root=root))


def read_labels(path: Path, which: str) -> tuple[np.ndarray, list[str]]:
    """(int64 labels ``[N]``, class names) from a ``{split}_labels.pkl``; ``which`` = specific | general."""
    what = "tieredImageNet labels"
    data = safe_pickle.str_keys(safe_pickle.load(path, what), path, what)
    key = f"label_{which}"
    if key in data:
        raw, names = data[key], data.get(f"{key}_str")
    elif "labels" in data and which == "specific":
        raw, names = data["labels"], None
    else:
        raise UserError(f"{what} {path} has keys {sorted(data)}; expected {key} (and {key}_str)")
    try:
        labels = np.asarray(raw, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"{what} {path}: {key} should be an array of integer class ids") from None
    if len(labels) and labels.min() < 0:
        raise UserError(f"{what} {path}: negative class id in {key}")
    count = int(labels.max()) + 1 if len(labels) else 0
    if isinstance(names, (list, tuple, np.ndarray)) and len(names) >= count:
        class_names = [safe_pickle.as_text(n) for n in names]
    else:
        class_names = [str(i) for i in range(count)]
    return labels, class_names


def _decode_pngs(path: Path, size: tuple[int, int], resample: str) -> np.ndarray:
    what = "tieredImageNet image pickle"
    items = safe_pickle.load(path, what)
    if not isinstance(items, (list, tuple)):
        raise UserError(f"{what} {path} should hold a list of PNG-encoded images, found {type(items).__name__}")
    filt = resample_filter(resample)
    out = np.empty((len(items), size[0], size[1], 3), dtype=np.uint8)
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray) and item.dtype == np.uint8:
            item = item.tobytes()
        if not isinstance(item, (bytes, bytearray)):
            raise UserError(f"{what} {path}: item {i} is {type(item).__name__}, expected PNG bytes")
        out[i] = decode(item, f"{path}[{i}]", mode="RGB", size=size, resample=filt)
    return out


def _read_npz(path: Path, size: tuple[int, int], resample: str, channel_order: str) -> np.ndarray:
    if channel_order not in ("bgr", "rgb"):
        raise ConfigError(f"npz_channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError,
            NotImplementedError, RuntimeError) as e:
        raise UserError(f"tieredImageNet {path} is not a readable npz with an 'images' array ({brief(e)}); "
                        "re-create it") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise UserError(f"tieredImageNet {path}: 'images' should be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if channel_order == "bgr":
        images = images[..., ::-1]
    if images.shape[1:3] != size:
        filt = resample_filter(resample)
        return np.stack([resize_array(np.ascontiguousarray(im), size, filt) for im in images])
    return images


def read(
    root: str | Path,
    split: str,
    *,
    image_size: int = 84,
    labels: str = "specific",
    format: str = "auto",
    npz_channel_order: str = "bgr",
    resample: str = "lanczos",
) -> ImageDataset:
    """tieredImageNet ``split`` as uint8 ``[N, 3, image_size, image_size]`` with specific (or general) classes."""
    if labels not in ("specific", "general"):
        raise ConfigError(f"labels must be 'specific' or 'general', got {labels!r}")
    fmt, images_path, labels_path = _resolve(Path(root), split, format)
    size = required_hw(image_size, "tieredImageNet")
    y, names = read_labels(labels_path, labels)
    if fmt == "png":
        images = _decode_pngs(images_path, size, resample)
    else:
        images = _read_npz(images_path, size, resample, npz_channel_order)
    if len(images) != len(y):
        raise UserError(f"tieredImageNet {split}: {images_path.name} has {len(images)} images but "
                        f"{labels_path.name} has {len(y)} labels; the files do not belong together")
    return ImageDataset(to_nchw(images), y, names, f"tieredimagenet-{split}")


def source_files(root: str | Path, split: str, *, format: str = "auto", **_: object) -> list[Path]:
    """The images file and the labels file."""
    _, images_path, labels_path = _resolve(Path(root), split, format)
    return [images_path, labels_path]
