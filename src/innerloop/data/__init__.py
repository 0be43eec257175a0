"""Dataset readers, an on-disk cache and verified downloads.

    from innerloop.data import load_dataset
    train = load_dataset("omniglot", "/data/omniglot", "train")            # Vinyals split, 28x28, rotations
    test = load_dataset("miniimagenet", "/data/miniimagenet", "test", image_size=84)

Every reader returns an :class:`~innerloop.data.base.ImageDataset` (uint8 ``[N, C, H, W]`` images,
int64 labels, class names). ``load_dataset`` decodes once and afterwards loads the decoded arrays
from the cache (:mod:`innerloop.data.cache`). Readers (numpy + Pillow only), one module each:
``omniglot``, ``mnist``, ``cifar10``, ``miniimagenet``, ``tieredimagenet``, ``cub``, ``folder``;
their ``read(root, split, **options)`` docstrings list the options. Downloads:
:mod:`innerloop.data.download`; command line: :mod:`innerloop.data.cli`.

``preprocess(name, image)`` turns one of your images (path, bytes, PIL image, uint8 array) into the float32
``[C, H, W]`` model input a training image of dataset ``name`` becomes (:mod:`innerloop.data.preprocess`).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

from innerloop.data.base import ImageDataset

# The function ``preprocess`` replaces the submodule of the same name as this package's attribute: import the
# module's other names with ``from innerloop.data.preprocess import ...``.
from innerloop.data.preprocess import preprocess, preprocess_batch, preprocess_batch_for, preprocess_for
from innerloop.errors import ConfigError

#: Dataset name -> reader module.
READERS = {
    "omniglot": "innerloop.data.omniglot",
    "mnist": "innerloop.data.mnist",
    "cifar10": "innerloop.data.cifar10",
    "miniimagenet": "innerloop.data.miniimagenet",
    "tieredimagenet": "innerloop.data.tieredimagenet",
    "cub": "innerloop.data.cub",
    "folder": "innerloop.data.folder",
}

__all__ = ["ImageDataset", "READERS", "load_dataset", "reader", "splits", "reader_options", "preprocess",
           "preprocess_batch", "preprocess_for", "preprocess_batch_for"]


def reader(name: str) -> ModuleType:
    """The reader module of dataset ``name``; ConfigError listing the known names otherwise."""
    try:
        return importlib.import_module(READERS[name])
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}: use one of {', '.join(READERS)}") from None


def splits(name: str) -> tuple[str, ...]:
    """The standard splits of dataset ``name`` (what ``innerloop data prepare`` builds by default)."""
    return tuple(reader(name).SPLITS)


def reader_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with the reader's defaults and made JSON-stable (the cache key's part).

    ConfigError for an option the reader does not take.
    """
    params = inspect.signature(reader(name).read).parameters
    known = {k: p.default for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for dataset {name!r}: valid options are "
                          f"{', '.join(known) or 'none'}")
    out = {}
    for key, default in known.items():
        value = options.get(key, default)
        if isinstance(value, Path) or (key.endswith(("_file", "_dir")) and isinstance(value, str)):
            value = str(Path(value).expanduser().resolve())
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def load_dataset(
    name: str,
    root: str | Path,
    split: str,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    mmap: bool = False,
    **options: Any,
) -> ImageDataset:
    """Dataset ``name`` (one of :data:`READERS`), split ``split``, read from ``root``.

    ``options`` go to the reader (e.g. ``image_size=28, rotations=False`` for Omniglot).
    With ``cache`` (default) the decoded arrays are kept under ``cache_dir`` (else
    ``$INNERLOOP_CACHE``, else ``~/.cache/innerloop``) and reused while the source files and
    options are unchanged; ``mmap=True`` memory-maps the cached images read-only instead of
    loading them (for sets larger than memory). Problems the user can fix raise
    :class:`~innerloop.errors.UserError` with a one-line message.
    """
    module = reader(name)
    opts = reader_options(name, options)
    root = Path(root).expanduser()
    if not cache:
        return module.read(root, split, **opts)
    from innerloop.data import cache as cache_mod

    sources = module.source_files(root, split, **opts)
    return cache_mod.load_or_build(name, split, opts, sources, lambda: module.read(root, split, **opts),
                                   cache_dir=cache_dir, mmap=mmap, origin=str(root.resolve()))

