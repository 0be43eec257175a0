"""CUB-200-2011 (Wah et al.): 11,788 photos of 200 bird species, as ``[N, 3, 84, 84]`` uint8.

Reads the official tree ``CUB_200_2011/images/<class>/<image>.jpg`` (in ``root``, or ``root`` is
the ``CUB_200_2011`` folder itself) and a class split file: a JSON list of class folder names
(torchmeta's format, 100/50/50 classes) at ``root/splits/torchmeta/{split}.json``, ``root/{split}.json``
or ``split_file``. ``split="all"`` takes all classes and needs no file. Each photo is converted to
RGB and resized to ``image_size`` x ``image_size`` (default 84, no crop, aspect not kept -- the
few-shot convention) with Pillow (default LANCZOS). Classes follow the split file's order, images
are sorted by file name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from innerloop.data.base import ImageDataset
from innerloop.data.imaging import IMAGE_EXTENSIONS, decode, required_hw, resample_filter, to_nchw
from innerloop.data.messages import brief
from innerloop.errors import ConfigError, UserError

SPLITS = ("train", "val", "test", "all")
_HINT = "run 'innerloop data download cub --root {root}'"


def images_dir(root: Path) -> Path:
    """The ``images`` folder of the CUB tree under ``root``."""
    for d in (root / "CUB_200_2011" / "images", root / "images"):
        if d.is_dir():
            return d
    raise UserError(f"CUB-200-2011 images not found under {root}: expected CUB_200_2011/images/<class>/*.jpg; "
                    + _HINT.format(root=root))


def split_file_path(root: Path, split: str, split_file: str | Path | None) -> Path | None:
    """The class split file for ``split`` (``None`` for ``all``)."""
    if split_file is not None:
        return Path(split_file)
    if split == "all":
        return None
    if split not in SPLITS:
        raise ConfigError(f"CUB has no split {split!r}: use one of {', '.join(SPLITS)} (or pass split_file)")
    for path in (root / "splits" / "torchmeta" / f"{split}.json", root / f"{split}.json"):
        if path.is_file():
            return path
    return root / "splits" / "torchmeta" / f"{split}.json"


def class_names(root: Path, split: str, split_file: str | Path | None) -> list[str]:
    """Class folder names of ``split``."""
    path = split_file_path(root, split, split_file)
    if path is None:
        return sorted(e.name for e in os.scandir(images_dir(root)) if e.is_dir())
    if not path.is_file():
        raise UserError(f"CUB split file not found: {path} (a JSON list of class folder names); "
                        + _HINT.format(root=root) + " or pass split_file=...")
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"CUB split file {path} is not valid JSON ({brief(e)})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserError(f"CUB split file {path} should be a JSON list of class folder names")
    return names


def _listing(root: Path, names: list[str]) -> list[list[Path]]:
    folder = images_dir(root)
    missing = [n for n in names if not (folder / n).is_dir()]
    if missing:
        raise UserError(f"CUB: {len(missing)} classes of the split are missing from {folder} (first: {missing[0]}); "
                        + _HINT.format(root=root))
    return [sorted(Path(e.path) for e in os.scandir(folder / n)
                   if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith("."))
            for n in names]


def read(
    root: str | Path,
    split: str,
    *,
    image_size: int = 84,
    split_file: str | Path | None = None,
    resample: str = "lanczos",
) -> ImageDataset:
    """CUB ``split`` as uint8 ``[N, 3, image_size, image_size]``, grouped by class."""
    root = Path(root)
    size = required_hw(image_size, "CUB")
    filt = resample_filter(resample)
    names = class_names(root, split, split_file)
    files = _listing(root, names)
    counts = [len(f) for f in files]
    images = np.empty((sum(counts), size[0], size[1], 3), dtype=np.uint8)
    i = 0
    for group in files:
        for path in group:
            images[i] = decode(path, str(path), mode="RGB", size=size, resample=filt)
            i += 1
    labels = np.repeat(np.arange(len(names), dtype=np.int64), counts)
    return ImageDataset(to_nchw(images), labels, names, f"cub-{split}")


def source_files(root: str | Path, split: str, *, split_file: str | Path | None = None, **_: object) -> list[Path]:
    """The split file and every image of the split's classes."""
    root = Path(root)
    names = class_names(root, split, split_file)
    path = split_file_path(root, split, split_file)
    return ([path] if path is not None else []) + [p for group in _listing(root, names) for p in group]
