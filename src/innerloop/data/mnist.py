"""MNIST in the original IDX format (``train-images-idx3-ubyte[.gz]`` etc.): ``[N, 1, 28, 28]`` uint8.

Files are looked for in ``root`` and ``root/MNIST/raw`` (torchvision's layout), gzipped or not,
also under the ``train-images.idx3-ubyte`` spelling. Each file's magic number, element type,
dimensions and exact length are checked; a truncated or corrupt file is a one-line error.

Files are read as a stream (gzip decompressed chunk by chunk) into an array of the size the IDX
header declares, so memory is bounded by that size, never by what the stream would expand to: a
header claiming more than :data:`MAX_BYTES`, or images larger than :data:`MAX_SIDE` pixels a side,
is refused before any data is read, and a stream longer than its header says is refused after
reading one byte past the declared end (a small ``.gz`` expanding to gigabytes never does).
"""

from __future__ import annotations

import contextlib
import gzip
import math
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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
#: Largest IDX payload accepted (MNIST's training images are 47 MB; EMNIST's largest file 550 MB).
MAX_BYTES = 1 << 31
#: Largest image side accepted in an images file (MNIST-like data is 28x28).
MAX_SIDE = 1024
_CHUNK = 1 << 20
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


@contextlib.contextmanager
def _open_stream(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading, transparently gunzipped (as a stream) when it starts with the gzip magic."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not gzipped:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw) as stream:
            yield stream  # type: ignore[misc]


def _read_dims(stream: BinaryIO, path: Path, ndim: int, fix: str) -> tuple[int, ...]:
    """Check the IDX header (magic, element type, dimensions, claimed size) and return the dimensions."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise UserError(f"MNIST file {path} is not an IDX file (bad magic number); {fix}")
    if magic[2] != _UBYTE or magic[3] != ndim:
        raise UserError(f"MNIST file {path} holds type 0x{magic[2]:02x} with {magic[3]} dimensions, expected "
                        f"unsigned bytes with {ndim}; is it the right file?")
    raw = stream.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise UserError(f"MNIST file {path} is truncated (header cut short); {fix}")
    dims = struct.unpack(f">{ndim}I", raw)
    if math.prod(dims) > MAX_BYTES:
        raise UserError(f"MNIST file {path} claims dimensions {dims} ({math.prod(dims):,} bytes), more than the "
                        f"{MAX_BYTES:,}-byte limit; not an MNIST-like file: {fix}")
    if ndim == 3 and not (0 < dims[1] <= MAX_SIDE and 0 < dims[2] <= MAX_SIDE):
        raise UserError(f"MNIST file {path} claims {dims[1]}x{dims[2]}-pixel images (dimensions {dims}); "
                        f"not an MNIST-like file (sides 1..{MAX_SIDE}): {fix}")
    return dims


def _read_exactly(stream: BinaryIO, size: int) -> tuple[np.ndarray, int]:
    """Up to ``size`` bytes of ``stream`` into a new uint8 array (filled chunk by chunk) and how many were read."""
    out = np.empty(size, dtype=np.uint8)
    view = memoryview(out)
    got = 0
    while got < size:
        n = stream.readinto(view[got:got + _CHUNK])
        if not n:
            break
        got += n
    return out, got


def read_idx(path: Path, ndim: int, root: Path | None = None) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as a uint8 array with ``ndim`` dimensions.

    Reads at most the header's declared size plus one byte, whatever the file expands to.
    """
    fix = _FIX.format(root=root or path.parent)
    try:
        with _open_stream(path) as stream:
            dims = _read_dims(stream, path, ndim, fix)
            header, size = 4 + 4 * ndim, math.prod(dims)
            data, got = _read_exactly(stream, size)
            if got < size:
                raise UserError(f"MNIST file {path} is truncated: {header + got} bytes for dimensions {dims}, "
                                f"expected {header + size}; {fix}")
            if stream.read(1):
                raise UserError(f"MNIST file {path} is corrupt (trailing bytes): longer than the {header + size} "
                                f"bytes its dimensions {dims} declare; {fix}")
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError, MemoryError) as e:
        if isinstance(e, FileNotFoundError):
            raise UserError(f"MNIST file {path} not found; {fix}") from None
        raise UserError(f"MNIST file {path} is truncated or corrupt ({brief(e)}); {fix}") from None
    return data.reshape(dims)


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
