"""Image decoding and resizing shared by the readers (Pillow + numpy only).

Every reader turns an encoded image (PNG/JPEG bytes or a file) into a uint8 array with
:func:`decode`, and stacks the results into ``[N, C, H, W]`` with :func:`to_nchw`.

Decoding is guarded against hostile files: the size an image header claims is checked against
:data:`MAX_PIXELS` *before* any pixel is decoded (a 40-byte PNG may claim 30000x30000), Pillow's
decompression-bomb warning counts as an error (its other warnings are not shown), and every
decoding failure (unidentified format, truncated data, bomb) is a one-line
:class:`~innerloop.errors.UserError` naming the file and the fix.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from innerloop.data.messages import brief
from innerloop.errors import ConfigError, UserError

#: Pillow resampling filters by name. ``lanczos`` is the default everywhere (antialiased, as MAML's
#: Omniglot resize and the miniImageNet tools use); ``bilinear`` is the cheaper alternative.
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "nearest": Image.Resampling.NEAREST,
}

#: Colour modes by the names the readers accept.
MODES = {"rgb": "RGB", "l": "L", "grayscale": "L", "gray": "L", "grey": "L"}

#: Largest image accepted, in pixels (8192 x 8192; few-shot datasets are far smaller, a 48 MP photo fits).
MAX_PIXELS = 8192 * 8192

#: What Pillow raises on a damaged or hostile file (plugins differ; all mean "cannot decode").
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError,
                  TypeError, ZeroDivisionError, MemoryError, OverflowError, Image.DecompressionBombError,
                  Image.DecompressionBombWarning)

#: File name endings treated as images by the folder-style readers.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def resample_filter(name: str) -> Image.Resampling:
    """The Pillow filter called ``name`` (case-insensitive); ConfigError for an unknown one."""
    try:
        return RESAMPLE[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown resample filter {name!r}: use one of {', '.join(RESAMPLE)}") from None


def color_mode(name: str) -> str:
    """Pillow mode ``"RGB"`` or ``"L"`` for ``name`` (``rgb``, ``grayscale``, ``L``, ...)."""
    try:
        return MODES[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown colour mode {name!r}: use 'RGB' or 'grayscale'") from None


def image_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``(height, width)`` from an int (square) or a pair; ``None`` keeps the stored size."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    elif isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2:
        h, w = (int(s) for s in size)
    else:
        raise ConfigError(f"image_size must be an int or [height, width], got {size!r}")
    if h < 1 or w < 1:
        raise ConfigError(f"image_size must be positive, got {size!r}")
    return h, w


def required_hw(size: int | Sequence[int] | None, what: str) -> tuple[int, int]:
    """:func:`image_hw` for readers whose images vary in size, so a target size is required."""
    hw = image_hw(size)
    if hw is None:
        raise ConfigError(f"{what} images differ in size: image_size must be an int or [height, width], not None")
    return hw


def _fix(what: str) -> str:
    return f"re-download or replace {what}"


def _check_pixels(im: Image.Image, what: str) -> None:
    """UserError if the header of ``im`` claims more than :data:`MAX_PIXELS` (checked before decoding)."""
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise UserError(f"image {what} claims {width}x{height} pixels, more than the {MAX_PIXELS:,}-pixel limit "
                        f"(a decompression bomb or not a dataset image); {_fix(what)}")


def _open_and_load(source: bytes | str | Path, what: str) -> Image.Image:
    """Open ``source``, check its claimed size, then decode every pixel.

    Pillow's bomb warning is raised as an error; its other warnings (recoverable damage such as
    corrupt EXIF data or a skipped TIFF tag) are not shown: the pixels decoded, and a warning's
    multi-line text must not precede the one-line error of a file that then fails.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        if isinstance(source, (str, Path)):
            with Image.open(source) as im:
                _check_pixels(im, what)
                im.load()  # decoded pixels stay valid after the file is closed
                return im
        im = Image.open(io.BytesIO(source))
        _check_pixels(im, what)
        im.load()
        return im


def open_image(source: bytes | bytearray | memoryview | np.ndarray | str | Path, what: str) -> Image.Image:
    """Open and fully decode ``source`` (encoded bytes or a path); UserError naming ``what`` if it fails.

    Refused before decoding: an image claiming more than :data:`MAX_PIXELS` (or Pillow's own bomb
    limit). Every decoding failure -- not an image, truncated, corrupt, bomb -- is one line.
    """
    if isinstance(source, np.ndarray):
        source = source.tobytes()
    elif isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    try:
        return _open_and_load(source, what)
    except FileNotFoundError:
        raise UserError(f"image not found: {what}") from None
    except UnidentifiedImageError:
        raise UserError(f"cannot decode image {what} (not an image file Pillow can read); {_fix(what)}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UserError(f"cannot decode image {what}: refused as a decompression bomb ({brief(e)}); "
                        f"{_fix(what)}") from None
    except _DECODE_ERRORS as e:
        raise UserError(f"cannot decode image {what} ({brief(e)}); {_fix(what)}") from None


def decode(
    source: bytes | bytearray | memoryview | np.ndarray | str | Path | Image.Image,
    what: str,
    *,
    mode: str = "RGB",
    size: tuple[int, int] | None = None,
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> np.ndarray:
    """Decode ``source`` to uint8 ``[H, W]`` (mode ``"L"``) or ``[H, W, 3]`` (``"RGB"``), resized to ``size``.

    ``size`` is ``(height, width)``; the resize is Pillow's ``Image.resize`` with ``resample``.
    """
    im = source if isinstance(source, Image.Image) else open_image(source, what)
    try:
        if im.mode != mode:
            im = im.convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), resample)
    except (ValueError, OSError) as e:  # e.g. a pixel mode Pillow cannot convert
        raise UserError(f"cannot convert image {what} ({im.mode}) to {mode} ({brief(e)}); {_fix(what)}") from None
    return np.asarray(im, dtype=np.uint8)


def resize_array(arr: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize one uint8 ``[H, W]`` or ``[H, W, 3]`` array with Pillow (a no-op when already ``size``)."""
    if arr.shape[:2] == size:
        return arr
    return np.asarray(Image.fromarray(arr).resize((size[1], size[0]), resample), dtype=np.uint8)


def resize_nchw(images: np.ndarray, size: tuple[int, int] | None, resample: Image.Resampling) -> np.ndarray:
    """Resize every image of a uint8 ``[N, C, H, W]`` array with Pillow (returned as is when already ``size``)."""
    if size is None or images.shape[2:] == size:
        return images
    hwc = images.transpose(0, 2, 3, 1)
    if hwc.shape[3] == 1:
        hwc = hwc[..., 0]
    out = np.empty((len(images), *size, *hwc.shape[3:]), dtype=np.uint8)
    for i, im in enumerate(hwc):
        out[i] = resize_array(np.ascontiguousarray(im), size, resample)
    return to_nchw(out)


def to_nchw(images: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` -> ``[N, 1, H, W]``; ``[N, H, W, C]`` -> ``[N, C, H, W]`` (contiguous uint8)."""
    if images.ndim == 3:
        return np.ascontiguousarray(images[:, None])
    if images.ndim == 4:
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    raise ValueError(f"expected [N, H, W] or [N, H, W, C] images, got shape {images.shape}")
