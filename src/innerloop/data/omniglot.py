"""Omniglot (Lake et al.): 1,623 handwritten characters from 50 alphabets, 20 drawings each.

Reads ``images_background.zip`` / ``images_evaluation.zip`` directly, or the extracted
``images_background/<Alphabet>/characterNN/*.png`` folders (looked for in ``root``,
``root/omniglot-py`` and ``root/python``). The PNGs are 105x105, mode ``"1"`` with ink = 0.

Preprocessing (MAML's): convert to 8-bit, **invert** (stroke 255, background 0), resize to
``image_size`` (default 28) with Pillow's ``resample`` filter (default LANCZOS, antialiased;
``"bilinear"`` is the other common choice). Output ``[N, 1, H, W]`` uint8, classes in split order,
each class's drawings in file-name (drawer) order.

Rotations: with ``rotations=True`` each character also gives classes rotated by 90/180/270 degrees
(counter-clockwise, as ``PIL.Image.rotate`` and ``np.rot90``). Each character's 20 PNGs are decoded
and resized once; the rotated classes are ``np.rot90`` of the resized arrays. Measured on 4,000
drawings x 3 rotations: rotating after the resize is *not* bit-identical to resizing the rotated
105x105 image (Pillow places its kernel windows asymmetrically): LANCZOS differs on ~10% of pixels
by up to 35 grey levels, BILINEAR on ~1.6% by 1 level. We rotate after resizing because (a) rotated classes are
then exact rotations of the stored images -- what MAML does (it rotates the 28x28 arrays) -- and
(b) it is ~3x faster (one resize per drawing instead of four).

Class splits (``protocol``):

* ``"vinyals"`` (default): ``splits/vinyals/{train,val,trainval,test}.txt`` under ``root`` (or
  ``split_file``), lines ``Alphabet/characterNN/rotDDD``: 1028/172/1200/423 characters, each line
  one class. ``rotations=False`` keeps only the ``rot000`` class of each character.
* ``"torchmeta"``: ``splits/torchmeta/{train,val,test}.json`` (``{"background": {alphabet:
  [characters]}, "evaluation": {...}}``); ``rotations=True`` adds the three rotations per character.
* ``"maml"``: no file; all 1,623 characters (sorted by name) shuffled by
  ``numpy.random.default_rng(seed)``; ``train`` = the first 1,200, ``test`` = the other 423. (The
  original MAML code shuffles with Python's ``random.seed(1)`` over ``os.listdir`` order, which is
  not reproducible across machines, so the exact character sets differ from it.)
* ``"lake"``: ``train`` = the 964 background characters, ``test`` = the 659 evaluation ones.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from innerloop.data.base import ImageDataset
from innerloop.data.imaging import decode, image_hw, resample_filter, resize_array
from innerloop.data.messages import brief
from innerloop.errors import ConfigError, UserError

SETS = ("images_background", "images_evaluation")
PROTOCOLS = {
    "vinyals": ("train", "val", "trainval", "test"),
    "torchmeta": ("train", "val", "test"),
    "maml": ("train", "test"),
    "lake": ("train", "test"),
}
#: Every split some protocol offers (the default protocol's are ``train, val, trainval, test``).
SPLITS = ("train", "val", "trainval", "test")
MAML_TRAIN = 1200
_ROTATIONS = (0, 90, 180, 270)
_LINE = re.compile(r"^([^/\s]+)/(character\d+)/rot(\d{3})$")
_DOWNLOAD_HINT = "run 'innerloop data download omniglot --root {root}'"
#: Largest zip member read into memory (Omniglot's PNGs are about 1 KB; a bigger one is not a drawing).
MAX_MEMBER_BYTES = 64 << 20
#: What zipfile raises on a damaged or hostile archive.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError,
               MemoryError, OverflowError)


class _ImageSet:
    """One of the two Omniglot image sets, as a zip file or an extracted folder."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = None
        if path.suffix == ".zip":
            try:
                self.zip = zipfile.ZipFile(path)
            except _ZIP_ERRORS as e:
                raise UserError(f"Omniglot archive {path} is corrupt or truncated ({brief(e)}); delete it and "
                                "run 'innerloop data download omniglot'") from None

    def characters(self) -> dict[str, list[str]]:
        """``"Alphabet/characterNN"`` -> that character's PNG names (sorted), as read by :meth:`read`."""
        chars: dict[str, list[str]] = {}
        if self.zip is not None:
            for name in self.zip.namelist():
                parts = name.split("/")
                if len(parts) >= 3 and name.lower().endswith(".png") and not name.startswith("__MACOSX"):
                    chars.setdefault(f"{parts[-3]}/{parts[-2]}", []).append(name)
        else:
            for alphabet in os.scandir(self.path):
                if not alphabet.is_dir():
                    continue
                for char in os.scandir(alphabet.path):
                    if char.is_dir():
                        pngs = [e.path for e in os.scandir(char.path) if e.name.lower().endswith(".png")]
                        if pngs:
                            chars[f"{alphabet.name}/{char.name}"] = pngs
        return {k: sorted(v) for k, v in chars.items()}

    def read(self, member: str) -> bytes:
        """The bytes of one PNG; a zip member declaring more than :data:`MAX_MEMBER_BYTES` is refused unread."""
        if self.zip is None:
            return Path(member).read_bytes()
        try:
            size = self.zip.getinfo(member).file_size
            if size > MAX_MEMBER_BYTES:
                raise UserError(f"Omniglot archive {self.path} is unsafe: {member} claims {size:,} bytes (more than "
                                f"{MAX_MEMBER_BYTES:,}; a decompression bomb?); delete it and "
                                "run 'innerloop data download omniglot'")
            return self.zip.read(member)
        except _ZIP_ERRORS as e:
            raise UserError(f"Omniglot archive {self.path} is corrupt ({member}: {brief(e)}); delete it and "
                            "run 'innerloop data download omniglot'") from None

    def files(self) -> list[Path]:
        """The files this set is read from (the zip, or every PNG of the folder)."""
        if self.zip is not None:
            return [self.path]
        return [Path(p) for names in self.characters().values() for p in names]

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _find_sets(root: Path) -> dict[str, Path]:
    """``{set name: zip or folder}`` for the sets present under ``root`` (folders win over zips)."""
    found: dict[str, Path] = {}
    for base in (root, root / "omniglot-py", root / "python"):
        for name in SETS:
            if name in found:
                continue
            if (base / name).is_dir():
                found[name] = base / name
            elif (base / f"{name}.zip").is_file():
                found[name] = base / f"{name}.zip"
    if not found:
        raise UserError(f"Omniglot images not found under {root}: expected images_background.zip and "
                        f"images_evaluation.zip (or their extracted folders); {_DOWNLOAD_HINT.format(root=root)}")
    return found


def _check(split: str, protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown Omniglot protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if split not in PROTOCOLS[protocol]:
        raise ConfigError(f"Omniglot protocol {protocol!r} has no split {split!r}: use one of "
                          f"{', '.join(PROTOCOLS[protocol])}")


def split_file_path(root: Path, split: str, protocol: str, split_file: str | Path | None) -> Path | None:
    """The split file this split needs (``None`` for the file-less protocols)."""
    if split_file is not None:
        return Path(split_file)
    if protocol == "vinyals":
        return root / "splits" / "vinyals" / f"{split}.txt"
    if protocol == "torchmeta":
        return root / "splits" / "torchmeta" / f"{split}.json"
    return None


def _read_split_file(path: Path, protocol: str, rotations: bool) -> list[tuple[str, int]]:
    """``[(character, degrees)]`` classes listed by a Vinyals ``.txt`` or torchmeta ``.json`` file."""
    if not path.is_file():
        raise UserError(f"Omniglot {protocol} split file not found: {path} ('innerloop data download omniglot' "
                        "fetches the Vinyals split files; or pass split_file=...)")
    text = path.read_text()
    classes: list[tuple[str, int]] = []
    if path.suffix == ".json":
        try:
            data = json.loads(text)
            for set_name in ("background", "evaluation"):
                for alphabet, chars in data.get(set_name, {}).items():
                    for char in chars:
                        classes += [(f"{alphabet}/{char}", r) for r in (_ROTATIONS if rotations else (0,))]
        except (json.JSONDecodeError, AttributeError, TypeError) as e:
            raise UserError(f"Omniglot split file {path} is not a torchmeta split ({brief(e)})") from None
        return classes
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _LINE.match(line)
        if m is None or int(m.group(3)) not in _ROTATIONS:
            raise UserError(f"Omniglot split file {path} line {number} is {line!r}; expected "
                            "Alphabet/characterNN/rotDDD with DDD in 000/090/180/270")
        char = f"{m.group(1)}/{m.group(2)}"
        if rotations:
            classes.append((char, int(m.group(3))))
        elif char not in seen:
            classes.append((char, 0))
        seen.add(char)
    return classes


def class_list(root: Path, split: str, protocol: str, rotations: bool, split_file: str | Path | None,
               seed: int, characters: dict[str, object]) -> list[tuple[str, int]]:
    """The split's classes as ``[(character, degrees)]``, in class-label order."""
    path = split_file_path(root, split, protocol, split_file)
    if path is not None:
        return _read_split_file(path, protocol, rotations)
    rots = _ROTATIONS if rotations else (0,)
    if protocol == "maml":
        names = sorted(characters)
        order = np.random.default_rng(seed).permutation(len(names))
        chosen = order[:MAML_TRAIN] if split == "train" else order[MAML_TRAIN:]
        chars = [names[i] for i in chosen]
    else:  # lake
        wanted = "images_background" if split == "train" else "images_evaluation"
        chars = sorted(c for c, (set_name, _) in characters.items() if set_name == wanted)  # type: ignore[misc]
    return [(c, r) for c in chars for r in rots]


def read(
    root: str | Path,
    split: str,
    *,
    image_size: int | None = 28,
    rotations: bool = True,
    protocol: str = "vinyals",
    split_file: str | Path | None = None,
    seed: int = 1,
    resample: str = "lanczos",
) -> ImageDataset:
    """Omniglot ``split`` under ``protocol`` as uint8 ``[N, 1, image_size, image_size]``.

    ``split``: see :data:`PROTOCOLS`; ``seed`` is used by ``protocol="maml"`` only.
    """
    root = Path(root)
    _check(split, protocol)
    size = image_hw(image_size)
    filt = resample_filter(resample)
    sets = {name: _ImageSet(p) for name, p in _find_sets(root).items()}
    try:
        characters: dict[str, tuple[str, list[str]]] = {}
        for set_name, image_set in sets.items():
            for char, members in image_set.characters().items():
                characters[char] = (set_name, members)
        classes = class_list(root, split, protocol, rotations, split_file, seed, characters)
        missing = [c for c, _ in classes if c not in characters]
        if missing:
            raise UserError(f"Omniglot split {split!r} needs {len(set(missing))} characters not found under {root} "
                            f"(first: {missing[0]}; found sets: {', '.join(sorted(sets))}); "
                            f"{_DOWNLOAD_HINT.format(root=root)}")
        h, w = size or (105, 105)
        if h != w and any(d % 180 for _, d in classes):
            raise ConfigError(f"90/270-degree Omniglot classes need a square image_size, got {image_size!r}: "
                              "pass an int or rotations=False")
        counts = [len(characters[c][1]) for c, _ in classes]
        images = np.empty((sum(counts), 1, h, w), dtype=np.uint8)
        labels = np.repeat(np.arange(len(classes), dtype=np.int64), counts)
        remaining = Counter(c for c, _ in classes)
        decoded: dict[str, np.ndarray] = {}
        start = 0
        for (char, degrees), n in zip(classes, counts):
            if char not in decoded:
                set_name, members = characters[char]
                decoded[char] = np.stack([decode_drawing(sets[set_name].read(m), f"{set_name}/{m}", size, filt)
                                          for m in members])
            images[start:start + n, 0] = np.rot90(decoded[char], degrees // 90, axes=(1, 2))
            start += n
            remaining[char] -= 1
            if remaining[char] == 0:
                del decoded[char]
    finally:
        for image_set in sets.values():
            image_set.close()
    names = [f"{c}/rot{d:03d}" for c, d in classes]
    return ImageDataset(images, labels, names, f"omniglot-{protocol}-{split}")


def decode_drawing(source: bytes | str | Path | Image.Image, what: str, size: tuple[int, int] | None,
                   filt: Image.Resampling) -> np.ndarray:
    """Decode one drawing (PNG bytes, a path or a PIL image), invert it (stroke 255, background 0) and resize
    it to ``size`` (``(height, width)``; ``None`` keeps it) with ``filt``: uint8 ``[H, W]``.

    What :func:`read` does to every PNG, and :func:`innerloop.data.preprocess.preprocess` to one image.
    """
    ink_bright = 255 - decode(source, what, mode="L")
    return ink_bright if size is None else resize_array(ink_bright, size, filt)


def source_files(
    root: str | Path,
    split: str,
    *,
    protocol: str = "vinyals",
    split_file: str | Path | None = None,
    **_: object,
) -> list[Path]:
    """Files whose change must invalidate a cached copy of this split (the image sets and the split file)."""
    root = Path(root)
    _check(split, protocol)
    files: list[Path] = []
    for path in _find_sets(root).values():
        if path.suffix == ".zip":
            files.append(path)  # no need to open it: its size and mtime are the fingerprint
        else:
            files += _ImageSet(path).files()
    path = split_file_path(root, split, protocol, split_file)
    if path is not None:
        files.append(path)
    return files
