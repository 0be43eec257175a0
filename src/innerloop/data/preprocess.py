"""Turn your own images into model inputs exactly as a dataset's training images were.

    from innerloop.data import preprocess
    x = preprocess("omniglot", "my_drawing.png")               # float32 [1, 28, 28], as training saw it
    xs = preprocess_batch("miniimagenet", paths, normalize="imagenet")   # [N, 3, 84, 84]
    xs = preprocess_batch_for(meta.config, paths)              # a loaded run's dataset, size and normalization

An image goes through its dataset reader's own per-image step (:func:`innerloop.data.omniglot.decode_drawing`:
grayscale, inverted, resized; the image-file readers: :func:`innerloop.data.imaging.decode` to the reader's
colour mode and size; MNIST and CIFAR-10 store pixel arrays, which their readers resize with the same Pillow
call only when the size differs), then the scaling training applies (``/ 255``, and with ``normalize="imagenet"`` the per-channel
ImageNet mean and std), so the numbers equal those a training episode holds for the same source image.

``image`` may be a path, encoded bytes (PNG, JPEG, ...), a PIL image or a uint8 numpy array ``[H, W]`` /
``[H, W, C]`` (C = 1, 3 or 4) holding the pixels of an image as the dataset stores it (an Omniglot array is
dark ink on white, like its PNGs). Every failure is a one-line :class:`~innerloop.errors.UserError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from innerloop.data.imaging import color_mode, decode, image_hw, resample_filter
from innerloop.errors import ConfigError, UserError

if TYPE_CHECKING:  # torch is imported when a batch is scaled: ``import innerloop.data`` stays numpy + Pillow
    import torch

#: Pillow colour mode of each dataset's images (``folder``: its ``mode`` option, RGB unless told); the same
#: names as :data:`innerloop.data.READERS`.
MODES = {"omniglot": "L", "mnist": "L", "cifar10": "RGB", "miniimagenet": "RGB", "tieredimagenet": "RGB",
         "cub": "RGB", "folder": "RGB"}
#: The ``task.normalize`` values.
NORMALIZE = ("none", "imagenet", "signed")
#: Task families whose runs classify images of ``task.dataset``.
IMAGE_FAMILIES = ("episodes",)

ImageLike = Union[str, Path, bytes, bytearray, memoryview, Image.Image, np.ndarray]

__all__ = ["MODES", "default_size", "preprocess", "preprocess_batch", "preprocess_for", "preprocess_batch_for",
           "settings_for"]


def _check_name(name: str) -> None:
    if name not in MODES:
        raise ConfigError(f"unknown dataset {name!r}: use one of {', '.join(MODES)}")


def default_size(name: str) -> tuple[int, int]:
    """``(height, width)`` the reader of ``name`` resizes to by default (its ``read``'s ``image_size``)."""
    from innerloop.data import reader

    _check_name(name)
    size = inspect.signature(reader(name).read).parameters["image_size"].default
    return image_hw(size)  # type: ignore[return-value]


def _source(image: Any, what: str | None) -> tuple[bytes | str | Path | Image.Image, str]:
    """``image`` as something :func:`~innerloop.data.imaging.decode` takes, and the name errors give it."""
    if isinstance(image, (str, Path)):
        return Path(image).expanduser(), what or str(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), what or "image bytes"
    if isinstance(image, Image.Image):
        return image, what or f"PIL image ({image.mode} {image.width}x{image.height})"
    if isinstance(image, np.ndarray):
        what = what or f"array {tuple(image.shape)}"
        if image.dtype != np.uint8:
            raise UserError(f"{what} has dtype {image.dtype}: pass uint8 pixels 0..255 (e.g. "
                            "(x * 255).round().astype(np.uint8)), or a path, bytes or PIL image")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))) or 0 in image.shape:
            raise UserError(f"{what}: expected an image array [H, W] or [H, W, C] with C = 1, 3 or 4 "
                            "(pass encoded files as bytes)")
        return Image.fromarray(np.ascontiguousarray(image)), what
    raise UserError(f"cannot preprocess an object of type {type(image).__name__}: pass a path, encoded bytes, a "
                    "PIL image or a uint8 numpy array [H, W] / [H, W, C]")


def _pixels(name: str, image: Any, size: tuple[int, int], mode: str, resample: str, what: str | None) -> np.ndarray:
    """uint8 ``[C, H, W]``: the dataset reader's per-image step applied to ``image``."""
    from innerloop.data.omniglot import decode_drawing

    source, what = _source(image, what)
    filt = resample_filter(resample)
    if name == "omniglot":
        arr = decode_drawing(source, what, size, filt)
    else:
        arr = decode(source, what, mode=mode, size=size, resample=filt)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _scale(images: np.ndarray, normalize: str) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> float32 as training episodes hold them (:class:`~innerloop.tasks.EpisodeTasks`)."""
    import torch

    from innerloop.tasks.episodes import to_float

    from innerloop.build import NORMALIZE as STATS

    x = torch.from_numpy(images)
    mean, std = STATS[normalize]
    if mean is None:
        return to_float(x)
    c = x.shape[1]
    return to_float(x, torch.tensor(mean[:c], dtype=torch.float32).view(1, c, 1, 1),
                    torch.tensor(std[:c], dtype=torch.float32).view(1, c, 1, 1))


def _options(name: str, image_size: Any, normalize: str, mode: str | None) -> tuple[tuple[int, int], str]:
    """Checked ``(size, Pillow mode)``; ConfigError for an unknown dataset, normalization or mode."""
    _check_name(name)
    if normalize not in NORMALIZE:
        raise ConfigError(f"unknown normalize {normalize!r}: use one of {', '.join(NORMALIZE)}")
    if mode is not None and name != "folder":
        raise ConfigError(f"mode applies to the 'folder' dataset only: {name} images are "
                          f"{'grayscale' if MODES[name] == 'L' else 'RGB'}")
    pil_mode = color_mode(mode) if mode is not None else MODES[name]
    if normalize == "imagenet" and pil_mode != "RGB":
        raise ConfigError(f"normalize='imagenet' takes RGB images, but {name} images are grayscale: use "
                          "normalize='none'")
    size = image_hw(image_size) if image_size not in (None, 0) else default_size(name)
    return size, pil_mode  # type: ignore[return-value]


def preprocess(
    name: str,
    image: ImageLike,
    image_size: int | Sequence[int] | None = None,
    normalize: str = "none",
    *,
    resample: str = "lanczos",
    mode: str | None = None,
    what: str | None = None,
) -> torch.Tensor:
    """The float32 ``[C, H, W]`` model input that ``image`` becomes as a training image of dataset ``name``.

    ``image_size``: an int, ``[height, width]``, or ``None`` / ``0`` for the reader's default (Omniglot and
    MNIST 28, CIFAR-10 32, the others 84); ``normalize``: ``"none"`` or ``"imagenet"``; ``resample``: the
    Pillow filter (the readers' default, ``"lanczos"``); ``mode``: ``"RGB"`` or ``"grayscale"``, for
    ``name="folder"`` only; ``what``: the name errors give the image (default: its path or type).
    """
    return preprocess_batch(name, [image], image_size, normalize, resample=resample, mode=mode,
                            what=None if what is None else [what])[0]


def preprocess_batch(
    name: str,
    images: Iterable[ImageLike],
    image_size: int | Sequence[int] | None = None,
    normalize: str = "none",
    *,
    resample: str = "lanczos",
    mode: str | None = None,
    what: Sequence[str] | None = None,
) -> torch.Tensor:
    """:func:`preprocess` of every image of ``images``, stacked: float32 ``[N, C, H, W]`` (``N`` may be 0)."""
    size, pil_mode = _options(name, image_size, normalize, mode)
    items = list(images)
    names = list(what) if what is not None else [None] * len(items)
    if len(names) != len(items):
        raise ConfigError(f"what names {len(names)} images but {len(items)} were given")
    channels = 1 if pil_mode == "L" else 3
    out = np.empty((len(items), channels, *size), dtype=np.uint8)
    for i, (image, label) in enumerate(zip(items, names)):
        out[i] = _pixels(name, image, size, pil_mode, resample, label)
    return _scale(out, normalize)


def settings_for(config: Any) -> dict[str, Any]:
    """``{"name", "image_size", "normalize"}`` a trained run's images were prepared with, from its
    :class:`~innerloop.config.Config` (or a loaded run, ``innerloop.load(...)``, via its ``.config``).

    ConfigError for a run that does not classify images of one dataset (``task.family`` other than episodes).
    """
    cfg = getattr(config, "config", config)
    task = getattr(cfg, "task", None)
    if task is None:
        raise ConfigError(f"expected an innerloop Config or a loaded run, got {type(config).__name__}")
    if task.family not in IMAGE_FAMILIES:
        raise ConfigError(f"the run's task.family is {task.family!r}, not image classification ('episodes'): its "
                          "inputs are not images of one dataset")
    return {"name": task.dataset, "image_size": task.image_size or None, "normalize": task.normalize}


def preprocess_for(config: Any, image: ImageLike, *, what: str | None = None) -> torch.Tensor:
    """:func:`preprocess` with the dataset, image size and normalization a run was trained with:
    ``config`` is its :class:`~innerloop.config.Config` or the loaded run (``innerloop.load(run_dir)``)."""
    return preprocess(image=image, what=what, **settings_for(config))


def preprocess_batch_for(config: Any, images: Iterable[ImageLike], *, what: Sequence[str] | None = None
                         ) -> torch.Tensor:
    """:func:`preprocess_batch` with the settings of a run (see :func:`preprocess_for`): ``[N, C, H, W]``."""
    return preprocess_batch(images=images, what=what, **settings_for(config))
