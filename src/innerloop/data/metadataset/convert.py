"""Write Omniglot, MNIST and CIFAR-10 in Meta-Dataset's layout: ``OUT/<source>/{class_id}.tfrecords`` +
``dataset_spec.json`` (``innerloop data to-records``).

Each record is a ``tf.train.Example`` with ``image`` (PNG bytes) and ``label`` (the absolute class id);
each class file holds its images in the source's order. Images come from the existing readers:

* **omniglot** (bi-level spec, alphabets are the superclasses; images are the original 105x105 PNG files,
  byte for byte: black strokes on white, not inverted). Split, as Meta-Dataset's converter: TRAIN = the
  30 ``images_background`` alphabets except the 5 with the fewest characters (ties by name), VALID = those
  5 (Blackfoot, Ojibwe, Inuktitut, Tagalog, Alphabet_of_the_Magi: 14/14/16/17/20 characters), TEST = the
  20 ``images_evaluation`` alphabets; 25/5/20 alphabets, 964 - 81 = 883 / 81 / 659 characters. TRAIN and
  TEST alphabets in name order, VALID in (characters, name) order, characters in name order, drawings in
  file-name order; class names ``Alphabet-characterNN``.
* **mnist**, **cifar10** (flat specs, 10 classes in label order). Default split TRAIN/VALID/TEST = 0/0/10:
  both are test-only sources in the extended Meta-Dataset (CNAPs, Requeima et al. 2019), whose few
  classes would not fill ``min_ways=5`` in more than one split. ``flat_split=(t, v, s)`` (summing to the
  class count) assigns classes ``0..t-1`` to TRAIN, the next ``v`` to VALID, the rest to TEST. Images:
  the reader's ``test`` split by default (MNIST: 10,000; the shared CIFAR-10 subset: 1,000), or
  ``images="all"`` for train then test. Grayscale MNIST is stored as 8-bit grayscale PNG, CIFAR-10 as RGB.

``max_classes`` keeps the first N classes (per alphabet for Omniglot) and ``max_images`` the first N images
per class, for small test conversions. Data is found as ``innerloop data prepare`` and ``train`` find it:
``data`` (``--data DIR``) or ``$INNERLOOP_DATA`` is the folder holding ``omniglot/``, ``mnist/``, ``cifar10/``.
A source is written to a temporary sibling folder and renamed when complete.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from innerloop.data.metadataset.records import encode_example, write_records
from innerloop.data.metadataset.spec import SPEC_FILE, bilevel_spec_json, flat_spec_json, write_spec
from innerloop.errors import ConfigError, UserError

__all__ = ["SOURCES", "FLAT_SPLIT", "OMNIGLOT_VALID_ALPHABETS", "resolve_data_dir", "convert", "convert_all"]

SOURCES = ("omniglot", "mnist", "cifar10")
#: Default TRAIN/VALID/TEST class counts of the flat sources (test-only, as in the extended Meta-Dataset).
FLAT_SPLIT = (0, 0, 10)
#: How many of Omniglot's background alphabets (the smallest ones) form VALID.
OMNIGLOT_VALID_ALPHABETS = 5
Log = Callable[[str], None]


def resolve_data_dir(data: str | Path | None) -> Path:
    """The folder holding the datasets: ``data``, else ``$INNERLOOP_DATA``; a one-line error naming ``--data``."""
    if data is None or str(data) == "":
        env = os.environ.get("INNERLOOP_DATA", "")
        if not env:
            raise UserError("no data folder: pass --data DIR (the folder holding omniglot/, mnist/, cifar10/) "
                            "or set INNERLOOP_DATA")
        data = env
    return Path(data).expanduser()


def _source_dir(base: Path, source: str) -> Path:
    folder = base / source
    if not folder.is_dir():
        raise UserError(f"no {source}/ folder under {base}: pass --data DIR, the folder holding "
                        f"{', '.join(s + '/' for s in SOURCES)} (or set INNERLOOP_DATA); "
                        f"'innerloop data download {source} --root DIR/{source}' fetches it")
    return folder


def _png(pixels: np.ndarray) -> bytes:
    """PNG bytes of one uint8 ``[C, H, W]`` image (C = 1: grayscale, C = 3: RGB)."""
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _limit(n: int | None, what: str) -> int | None:
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ConfigError(f"{what} must be a positive integer, got {n!r}")
    return n


# -- Omniglot ---------------------------------------------------------------------------------------------------


def _omniglot(root: Path, dest: Path, max_classes: int | None, max_images: int | None) -> str:
    from innerloop.data import omniglot

    sets = {name: omniglot._ImageSet(p) for name, p in omniglot._find_sets(root).items()}
    try:
        missing = [s for s in omniglot.SETS if s not in sets]
        if missing:
            raise UserError(f"Omniglot {missing[0]} not found under {root}: both image sets are needed; "
                            f"run 'innerloop data download omniglot --root {root}'")
        alphabets: dict[str, dict[str, dict[str, list[str]]]] = {}
        for set_name, image_set in sets.items():
            for key, members in image_set.characters().items():
                alphabet, character = key.split("/")
                alphabets.setdefault(set_name, {}).setdefault(alphabet, {})[character] = members
        background, evaluation = alphabets["images_background"], alphabets["images_evaluation"]
        by_size = sorted(background, key=lambda a: (len(background[a]), a))
        valid = by_size[:OMNIGLOT_VALID_ALPHABETS]
        train = sorted(a for a in background if a not in valid)
        order = [(a, "images_background") for a in train] + [(a, "images_background") for a in valid] \
            + [(a, "images_evaluation") for a in sorted(evaluation)]
        per_superclass, images_per_class, class_names = [], [], []
        class_id = 0
        for alphabet, set_name in order:
            characters = sorted(alphabets[set_name][alphabet])[:max_classes]
            per_superclass.append(len(characters))
            for character in characters:
                members = alphabets[set_name][alphabet][character][:max_images]
                payloads = (encode_example(sets[set_name].read(m), class_id) for m in members)
                images_per_class.append(write_records(dest / f"{class_id}.tfrecords", payloads))
                class_names.append(f"{alphabet}-{character}")
                class_id += 1
    finally:
        for image_set in sets.values():
            image_set.close()
    split = (len(train), len(valid), len(evaluation))
    write_spec(bilevel_spec_json("omniglot", split, per_superclass, images_per_class,
                                 [a for a, _ in order], class_names, path=str(dest.parent / "omniglot")), dest)
    starts = np.cumsum([0, split[0], split[1]])
    counts = [sum(per_superclass[starts[i]:starts[i] + split[i]]) for i in range(3)]
    return (f"{len(class_names)} classes (TRAIN/VALID/TEST {counts[0]}/{counts[1]}/{counts[2]} in "
            f"{split[0]}/{split[1]}/{split[2]} alphabets), {sum(images_per_class)} images")


# -- flat sources -----------------------------------------------------------------------------------------------


def _flat(source: str, root: Path, dest: Path, max_classes: int | None, max_images: int | None,
          flat_split: Sequence[int] | None, images: str) -> str:
    from innerloop.data import reader

    if images not in ("test", "all"):
        raise ConfigError(f"images must be 'test' or 'all', got {images!r}")
    module = reader(source)
    parts = [module.read(root, split, image_size=None) for split in (("train", "test") if images == "all"
                                                                     else ("test",))]
    names = parts[0].class_names
    n = min(len(names), max_classes or len(names))
    if flat_split is None:
        split = (0, 0, n)
    else:
        split = tuple(int(s) for s in flat_split)
        if len(split) != 3 or min(split) < 0 or sum(split) != n:
            raise ConfigError(f"flat split {','.join(map(str, flat_split))} must be three non-negative class counts "
                              f"TRAIN,VALID,TEST summing to {n} (the classes of {source} being converted)")
    by_class = [ds.class_indices() for ds in parts]
    images_per_class = []
    for class_id in range(n):
        pixels = [ds.images[i] for ds, idx in zip(parts, by_class) for i in idx[class_id]][:max_images]
        payloads = (encode_example(_png(p), class_id) for p in pixels)
        images_per_class.append(write_records(dest / f"{class_id}.tfrecords", payloads))
    write_spec(flat_spec_json(source, split, images_per_class, names[:n], path=str(dest.parent / source)), dest)
    return f"{n} classes (TRAIN/VALID/TEST {split[0]}/{split[1]}/{split[2]}), {sum(images_per_class)} images"


# -- driver -----------------------------------------------------------------------------------------------------


def _prepare_dest(final: Path, force: bool) -> Path:
    if final.exists():
        if not final.is_dir():
            raise UserError(f"{final} exists and is not a folder: choose another --out")
        if not force:
            raise UserError(f"{final} already exists: pass --force to replace it (or choose another --out)")
        if any(final.iterdir()) and not (final / SPEC_FILE).is_file():
            raise UserError(f"{final} is not a Meta-Dataset records folder (no {SPEC_FILE}); refusing to replace "
                            "it: choose another --out")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def convert(source: str, out: str | Path, *, data: str | Path | None = None, max_classes: int | None = None,
            max_images: int | None = None, flat_split: Sequence[int] | None = None, images: str = "test",
            force: bool = False, log: Log | None = print) -> Path:
    """Convert ``source`` (``omniglot``, ``mnist``, ``cifar10``) into ``out/<source>/``; returns that folder.

    Prints one progress line (counts, seconds) through ``log``. See the module docstring for the splits.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r} for to-records: use one of {', '.join(SOURCES)} or all")
    _limit(max_classes, "max_classes")
    _limit(max_images, "max_images")
    root = _source_dir(resolve_data_dir(data), source)
    final = Path(out).expanduser() / source
    start = time.perf_counter()
    tmp = _prepare_dest(final, force)
    try:
        if source == "omniglot":
            summary = _omniglot(root, tmp, max_classes, max_images)
        else:
            summary = _flat(source, root, tmp, max_classes, max_images, flat_split, images)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if log is not None:
        log(f"{source}: {summary} -> {final} in {time.perf_counter() - start:.1f} s")
    return final


def convert_all(sources: Sequence[str], out: str | Path, **options: Any) -> list[Path]:
    """:func:`convert` each of ``sources`` (``"all"`` means every one of :data:`SOURCES`)."""
    names = list(SOURCES) if "all" in sources else list(dict.fromkeys(sources))
    for name in names:
        if name not in SOURCES:
            raise ConfigError(f"unknown source {name!r} for to-records: use one of {', '.join(SOURCES)} or all")
    return [convert(name, out, **options) for name in names]
