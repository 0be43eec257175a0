"""MNIST in the original IDX format (``train-images-idx3-ubyte[.gz]`` etc.): ``[N, 1, 28, 28]`` uint8.

Files are looked for in ``root`` and ``root/MNIST/raw`` (torchvision's layout), gzipped or not,
also under the ``train-images.idx3-ubyte`` spelling. Each file's magic number, element type,
dimensions and exact length are checked; a truncated or corrupt file is a one-line error.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from innerloop.data.base import ImageDataset
from innerloop.data.imaging import image_hw, resample_filter, resize_nchw
from innerloop.data.messages import brief
from innerloop.errors import ConfigError, UserError

SPLITS = ("train", "test")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08
_FIX = "delete it and run 'innerloop data download mnist --root {root}'"


def _candidates(root: Path, base: str) -> list[Path]:
    dotted = base.replace("-idx", ".idx")
    return [d / (name + ext) for d in (root, root / "MNIST" / "raw")
            for name in (base, dotted) for ext in ("", ".gz")]


def find_file(root: Path, base: str) -> Path:
    """The first existing spelling of IDX file ``base`` under ``root``."""
    for path in _candidates(root, base):
        if path.is_file():
            return path
    raise UserError(f"MNIST file {base}[.gz] not found under {root}; run 'innerloop data download mnist --root {root}'")


def read_idx(path: Path, ndim: int, root: Path | None = None) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as a uint8 array with ``ndim`` dimensions."""
    fix = _FIX.format(root=root or path.parent)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise UserError(f"MNIST file {path} is truncated or corrupt ({brief(e)}); {fix}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"MNIST file {path} is not an IDX file (bad magic number); {fix}")
    if raw[2] != _UBYTE or raw[3] != ndim:
        raise UserError(f"MNIST file {path} holds type 0x{raw[2]:02x} with {raw[3]} dimensions, expected "
                        f"unsigned bytes with {ndim}; is it the right file?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"MNIST file {path} is truncated (header cut short); {fix}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "corrupt (trailing bytes)"
        raise UserError(f"MNIST file {path} is {what}: {len(raw)} bytes for dimensions {dims}, "
                        f"expected {expected}; {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read(root: str | Path, split: str, *, image_size: int | None = 28, resample: str = "lanczos") -> ImageDataset:
    """MNIST ``split`` (``train``: 60,000, ``test``: 10,000) as uint8 ``[N, 1, 28, 28]``, classes ``"0".."9"``.

    ``image_size`` other than 28 resizes every digit with Pillow's ``resample`` filter.
    """
    root = Path(root)
    if split not in FILES:
        raise ConfigError(f"MNIST has no split {split!r}: use one of {', '.join(SPLITS)}")
    image_file, label_file = (find_file(root, base) for base in FILES[split])
    images = read_idx(image_file, 3, root)
    labels = read_idx(label_file, 1, root)
    if len(images) != len(labels):
        raise UserError(f"MNIST {split}: {image_file.name} has {len(images)} images but {label_file.name} has "
                        f"{len(labels)} labels; re-download both")
    if len(labels) and labels.max() > 9:
        raise UserError(f"MNIST file {label_file} has label {labels.max()} (expected 0..9); is it the right file?")
    images = resize_nchw(np.ascontiguousarray(images[:, None]), image_hw(image_size), resample_filter(resample))
    return ImageDataset(images, labels.astype(np.int64), [str(d) for d in range(10)], f"mnist-{split}")


def source_files(root: str | Path, split: str, **_: object) -> list[Path]:
    """The two IDX files of ``split``."""
    root = Path(root)
    if split not in FILES:
        raise ConfigError(f"MNIST has no split {split!r}: use one of {', '.join(SPLITS)}")
    return [find_file(root, base) for base in FILES[split]]
