"""Any class-per-folder image tree: ``root/<class>/<image>`` (or ``root/<split>/<class>/<image>``).

Classes are the sub-folder names, sorted; images are the files ending in a known image extension
(:data:`innerloop.data.imaging.IMAGE_EXTENSIONS`, case-insensitive; hidden files skipped), sorted by
name. ``split="all"`` reads ``root`` itself; any other ``split`` reads ``root/<split>``. Images are
converted to ``mode`` (``"RGB"`` or ``"grayscale"``) and resized to ``image_size`` (an int or
``[height, width]``; ``None`` keeps the stored size, which must then be the same for all) with
Pillow (default LANCZOS). Output ``[N, 3 or 1, H, W]`` uint8.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from innerloop.data.base import ImageDataset
from innerloop.data.imaging import IMAGE_EXTENSIONS, color_mode, decode, image_hw, resample_filter, to_nchw
from innerloop.errors import ConfigError, UserError

SPLITS = ("all",)


def split_dir(root: Path, split: str) -> Path:
    """``root`` for ``split="all"``, else ``root/<split>``; UserError if it is not a folder."""
    directory = root if split == "all" else root / split
    if not directory.is_dir():
        if split != "all" and root.is_dir():
            subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir())
            raise UserError(f"no folder {directory} for split {split!r}: use split='all' to read {root} itself, "
                            f"or one of its sub-folders ({', '.join(subdirs[:8]) or 'none'})")
        raise UserError(f"image folder not found: {directory}")
    return directory


def listing(directory: Path) -> tuple[list[str], list[list[Path]]]:
    """(sorted class names, each class's sorted image files) of a class-per-folder tree."""
    names = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    files = [sorted(Path(e.path) for e in os.scandir(directory / n)
                    if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS))
             for n in names]
    if not names or not any(files):
        raise UserError(f"no images found in {directory}: expected {directory}/<class>/<image> "
                        f"({', '.join(IMAGE_EXTENSIONS)})")
    return names, files


def read(
    root: str | Path,
    split: str = "all",
    *,
    image_size: int | list[int] | None = 84,
    mode: str = "RGB",
    resample: str = "lanczos",
) -> ImageDataset:
    """The tree under ``root`` (``split`` as above) as uint8 ``[N, C, H, W]``, grouped by class."""
    directory = split_dir(Path(root), split)
    size = image_hw(image_size)
    pil_mode = color_mode(mode)
    filt = resample_filter(resample)
    names, files = listing(directory)
    arrays = [decode(p, str(p), mode=pil_mode, size=size, resample=filt) for group in files for p in group]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ConfigError(f"images in {directory} differ in size ({len(shapes)} sizes, e.g. "
                          f"{', '.join(str(s[:2]) for s in list(shapes)[:2])}): pass image_size")
    labels = np.repeat(np.arange(len(names), dtype=np.int64), [len(f) for f in files])
    return ImageDataset(to_nchw(np.stack(arrays)), labels, names, f"folder-{directory.name}")


def source_files(root: str | Path, split: str = "all", **_: object) -> list[Path]:
    """Every image file that ``read`` decodes."""
    _, files = listing(split_dir(Path(root), split))
    return [p for group in files for p in group]
