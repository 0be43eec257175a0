"""On-disk cache of decoded datasets: plain ``.npy`` arrays that load (or memory-map) in a blink.

Layout: ``<cache_dir>/<dataset>/<split>-<options hash>-<root hash>-<sources hash>/`` holding ``images.npy``
(uint8 ``[N, C, H, W]``), ``labels.npy`` (int64 ``[N]``) and ``meta.json`` (class names, shapes,
the labels' SHA-256, and what the entry was built from). The cache directory is the ``cache_dir``
argument, else ``$INNERLOOP_CACHE``, else ``~/.cache/innerloop``.

* Keyed by dataset, split, reader options, dataset root and a fingerprint of the source files
  (path, size and modification time of each), so editing options or replacing a source file
  builds a new entry; the superseded entry (same dataset, split, options and root) is removed then.
* Written atomically: the three files go to a private temporary directory that is renamed into
  place only once complete, so an interrupted run leaves no half entry (a killed run's temporary
  directory is removed by the next write).
* Checked on load: a missing/garbled ``meta.json``, a truncated or mis-shaped ``.npy`` or labels that
  do not match their recorded hash make the entry count as corrupt; it is deleted and rebuilt, with
  a warning, never a crash. (Image pixels are not hashed -- that would cost a full read of every
  large set; truncation and header damage, the realistic failures, are caught by the size checks.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from innerloop.data.base import ImageDataset
from innerloop.data.messages import brief
from innerloop.errors import UserError

#: Bump when the entry layout or any reader's output changes, so old entries are not reused.
FORMAT_VERSION = 1
_TMP_PREFIX = ".tmp-"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$INNERLOOP_CACHE``, else ``~/.cache/innerloop``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("INNERLOOP_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "innerloop"


def fingerprint(paths: Iterable[str | Path]) -> str:
    """SHA-256 over each source file's absolute path, size and mtime (ns), in sorted order.

    Cheap (one ``stat`` per file) and sensitive to any replacement or edit of a source; a missing
    file contributes a marker, so it changes the fingerprint too.
    """
    h = hashlib.sha256()
    for p in sorted({str(Path(p).resolve()) for p in paths}):
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def entry_dir(dataset: str, split: str, options: Mapping[str, Any], sources_fp: str,
              cache_dir: str | Path | None = None, origin: str = "") -> Path:
    """Where the entry for these arguments lives (it may not exist).

    ``origin`` (the dataset root) is part of the name, so that a rebuild after a source change
    replaces the entry of the same root only, never that of another copy of the dataset.
    """
    opts = _digest({"version": FORMAT_VERSION, "options": dict(options)})
    where = _digest(origin)[:8]
    return cache_root(cache_dir) / dataset / f"{_safe(split)}-{opts}-{where}-{sources_fp[:16]}"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in text) or "_"


def _labels_hash(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def save(ds: ImageDataset, directory: Path, info: Mapping[str, Any] | None = None) -> Path:
    """Write ``ds`` as an entry at ``directory`` atomically; returns the entry directory.

    If another process finished the same entry first, its copy is kept and ours discarded.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(directory.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=directory.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
        labels = np.ascontiguousarray(ds.labels, dtype=np.int64)
        np.save(tmp / "images.npy", np.ascontiguousarray(ds.images), allow_pickle=False)
        np.save(tmp / "labels.npy", labels, allow_pickle=False)
        meta = {
            "version": FORMAT_VERSION,
            "name": ds.name,
            "class_names": list(ds.class_names),
            "images_shape": list(ds.images.shape),
            "labels_sha256": _labels_hash(labels),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **dict(info or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, directory)
        except OSError:
            if load(directory) is not None:  # another process finished the same entry first: keep it
                shutil.rmtree(tmp, ignore_errors=True)
                return directory
            if directory.exists():  # an unreadable entry is in the way: swap it out, then drop it
                aside = directory.with_name(f"{_TMP_PREFIX}{os.getpid()}-old-{directory.name}")
                os.rename(directory, aside)
                shutil.rmtree(aside, ignore_errors=True)
            os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load(directory: Path, mmap: bool = False) -> ImageDataset | None:
    """The entry at ``directory``, or ``None`` when it is missing or corrupt.

    ``mmap=True`` memory-maps the images read-only instead of reading them into memory.
    """
    directory = Path(directory)
    if not (directory / "meta.json").is_file():
        return None
    try:
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("version") != FORMAT_VERSION:
            return None
        # Opening as a memory map validates the header and that the file holds every byte.
        images = np.load(directory / "images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(directory / "labels.npy", allow_pickle=False)
        n = len(labels)
        names = meta["class_names"]
        if (images.dtype != np.uint8 or images.ndim != 4 or list(images.shape) != meta["images_shape"]
                or labels.dtype != np.int64 or labels.shape != (images.shape[0],)
                or _labels_hash(labels) != meta["labels_sha256"]
                or (n and (labels.min() < 0 or labels.max() >= len(names)))):
            raise ValueError("shape, dtype or labels do not match meta.json")
        if not mmap:
            images = np.load(directory / "images.npy", allow_pickle=False)
        return ImageDataset(images, labels, list(names), meta.get("name", ""))
    except (OSError, ValueError, KeyError, TypeError, EOFError, MemoryError, json.JSONDecodeError) as e:
        warnings.warn(f"innerloop: cache entry {directory} is corrupt ({brief(e)}); rebuilding it",
                      RuntimeWarning, stacklevel=2)
        shutil.rmtree(directory, ignore_errors=True)
        return None


def load_or_build(
    dataset: str,
    split: str,
    options: Mapping[str, Any],
    sources: Iterable[str | Path],
    build: Callable[[], ImageDataset],
    cache_dir: str | Path | None = None,
    mmap: bool = False,
    origin: str = "",
) -> ImageDataset:
    """Return the cached entry for these arguments, building and saving it first if needed.

    ``sources``: the files ``build`` reads (their fingerprint is part of the key); ``origin``: the
    dataset root (see :func:`entry_dir`).
    """
    sources = list(sources)
    fp = fingerprint(sources)
    directory = entry_dir(dataset, split, options, fp, cache_dir, origin)
    ds = load(directory, mmap=mmap)
    if ds is not None:
        return ds
    t0, say = time.perf_counter(), sys.stderr.isatty()  # on a terminal; a log keeps only results and errors
    if say:
        sys.stderr.write(f"preparing {dataset} {split} from {len(sources)} source file(s), once: it is cached in "
                         f"{directory.parent} ...")
        sys.stderr.flush()
    try:
        ds = build()
    except BaseException:
        if say:
            sys.stderr.write("\n")  # the error goes on its own line
        raise
    if say:
        sys.stderr.write(f" {len(ds.labels)} images in {time.perf_counter() - t0:.0f} s\n")
    info = {"dataset": dataset, "split": split, "options": dict(options), "origin": origin,
            "sources_fingerprint": fp, "sources": len(sources)}
    try:
        save(ds, directory, info)
    except OSError as e:
        raise UserError(f"cannot write the dataset cache at {directory.parent} ({brief(e)}); "
                        "pass another cache_dir or set INNERLOOP_CACHE") from None
    _remove_superseded(directory)
    if mmap:
        cached = load(directory, mmap=True)
        if cached is not None:
            return cached
    return ds


def _remove_superseded(directory: Path) -> None:
    """Delete entries for the same dataset/split/options/root built from older source files."""
    prefix = directory.name.rsplit("-", 1)[0] + "-"
    for other in directory.parent.glob(prefix + "*"):
        if other != directory and other.is_dir() and not other.name.startswith(_TMP_PREFIX):
            shutil.rmtree(other, ignore_errors=True)


def _remove_dead_temporaries(parent: Path) -> None:
    """Delete temporary directories left by processes that no longer run (e.g. killed mid-write)."""
    for tmp in parent.glob(_TMP_PREFIX + "*"):
        try:
            pid = int(tmp.name[len(_TMP_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
