"""Episodes from a Meta-Dataset source folder: ``dataset_spec.json`` + one ``{class_id}.tfrecords`` per class.

:class:`RecordSource` reads the spec once, then serves episodes by random access: for each class of an
:class:`~innerloop.data.metadataset.sampler.EpisodeDescription` it opens that class's file (its offset
index is built on first use and kept), reads only the requested records (one seek + one read each,
CRC-checked by default), checks each record's ``label`` is the class id, and closes the file before
the next class. Images are decoded with Pillow (PNG, JPEG, ...), converted to RGB (``channels=3``,
grayscale replicated) or to grayscale (``channels=1``), and resized to ``image_size`` (default 84;
126 is Meta-Dataset's ResNet size; any int or ``(height, width)``; ``None`` keeps the stored size)
with ``resample`` (default bilinear, as Meta-Dataset's decoder). Output arrays are uint8 ``[N, C, H, W]``;
episode labels are ``0..ways-1`` in the order of ``description.classes``. Scaling to floats (Meta-Dataset
uses ``2 * (x / 255 - 0.5)``) is left to the caller.

An optional LRU cache keeps up to ``cache_images`` decoded images (``image_size`` x ``channels`` bytes
each: 84x84x3 = 21 KB).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from innerloop.data.imaging import decode, image_hw, resample_filter
from innerloop.data.metadataset.records import RecordFile, RecordIndex, index_records
from innerloop.data.metadataset.sampler import EpisodeConfig, EpisodeDescription, EpisodeSampler
from innerloop.data.metadataset.spec import DatasetSpec, load_spec
from innerloop.errors import ConfigError, UserError

__all__ = ["Episode", "RecordSource"]

_FIX = "re-create the records with 'innerloop data to-records ... --force' or re-download this source"


@dataclass
class Episode:
    """One episode's images: ``support_x`` uint8 ``[Ns, C, H, W]`` with labels ``support_y`` int64 ``[Ns]`` in
    ``0..ways-1``, likewise ``query_x``/``query_y``; label ``k`` is absolute class id ``classes[k]``."""

    support_x: np.ndarray
    support_y: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray
    classes: np.ndarray
    description: EpisodeDescription
    source: str

    @property
    def ways(self) -> int:
        return len(self.classes)


class RecordSource:
    """One Meta-Dataset source folder, read lazily (see the module docstring).

    ``RecordSource("/records/omniglot").episodes("train", seed=0)`` yields variable-way variable-shot
    episodes; pass :class:`~innerloop.data.metadataset.sampler.EpisodeConfig` fields (``ways=5, shots=1,
    query=15``) for fixed ones.
    """

    def __init__(self, root: str | Path, *, image_size: int | Sequence[int] | None = 84, channels: int = 3,
                 resample: str = "bilinear", verify: bool = True, check_labels: bool = True,
                 cache_images: int = 0):
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        if not isinstance(cache_images, int) or cache_images < 0:
            raise ConfigError(f"cache_images must be a non-negative integer, got {cache_images!r}")
        self.root = Path(root).expanduser()
        self.spec: DatasetSpec = load_spec(self.root)
        self.size = image_hw(image_size)
        self.channels = channels
        self.mode = "RGB" if channels == 3 else "L"
        self.filter = resample_filter(resample)
        self.verify = verify
        self.check_labels = check_labels
        self.cache_images = cache_images
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._indexes: dict[int, RecordIndex] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    # -- records ------------------------------------------------------------------------------------------------

    def _index(self, class_id: int) -> RecordIndex:
        index = self._indexes.get(class_id)
        if index is None:
            if not 0 <= class_id < self.spec.num_classes:
                raise ConfigError(f"class id {class_id} out of range: source {self.name!r} has classes "
                                  f"0..{self.spec.num_classes - 1}")
            path = self.spec.record_path(class_id)
            index = index_records(path, verify=self.verify)
            expected = int(self.spec.images_per_class[class_id])
            if len(index) != expected:
                raise UserError(f"TFRecord file {path} has {len(index)} records but {self.root / 'dataset_spec.json'}"
                                f" says class {class_id} has {expected} images; {_FIX}")
            self._indexes[class_id] = index
        return index

    def num_records(self, class_id: int) -> int:
        """Records in class ``class_id``'s file (checked against the spec; builds its offset index)."""
        return len(self._index(int(class_id)))

    def read_raw(self, class_id: int, indices: Sequence[int] | np.ndarray) -> list[bytes]:
        """The encoded image bytes of records ``indices`` of class ``class_id`` (in the order asked)."""
        class_id = int(class_id)
        index = self._index(class_id)
        wanted = [int(i) for i in np.asarray(indices).ravel()]
        bad = [i for i in wanted if not 0 <= i < len(index)]
        if bad:
            raise ConfigError(f"record {bad[0]} out of range: class {class_id} of {self.name!r} has {len(index)}")
        out: dict[int, bytes] = {}
        with RecordFile(self.spec.record_path(class_id), verify=self.verify, index=index) as records:
            for i in sorted(set(wanted)):  # file order: forward seeks only
                image, label = records.read_example(i)
                if self.check_labels and label != class_id:
                    raise UserError(f"record {i} of {records.path} has label {label}, expected {class_id} (its class "
                                    f"id): the folder mixes records of different sources or splits; {_FIX}")
                out[i] = image
        return [out[i] for i in wanted]

    def read_images(self, class_id: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Decoded, resized images of records ``indices`` of class ``class_id``: uint8 ``[n, C, H, W]``."""
        class_id = int(class_id)
        wanted = [int(i) for i in np.asarray(indices).ravel()]
        found: dict[int, np.ndarray] = {}
        for i in wanted:
            hit = self._cache.get((class_id, i)) if self.cache_images else None
            if hit is not None:
                self._cache.move_to_end((class_id, i))
                found[i] = hit
        missing = [i for i in dict.fromkeys(wanted) if i not in found]
        if missing:
            path = self.spec.record_path(class_id)
            for i, data in zip(missing, self.read_raw(class_id, missing)):
                pixels = decode(data, f"{path} record {i}", mode=self.mode, size=self.size, resample=self.filter)
                found[i] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
                if self.cache_images:
                    self._cache[(class_id, i)] = found[i]
                    if len(self._cache) > self.cache_images:
                        self._cache.popitem(last=False)
        if not wanted:
            h, w = self.size or (0, 0)
            return np.zeros((0, self.channels, h, w), dtype=np.uint8)
        shapes = {found[i].shape for i in wanted}
        if len(shapes) > 1:
            raise ConfigError(f"images of class {class_id} of {self.name!r} differ in size ({sorted(shapes)[:2]}): "
                              "pass an image_size")
        return np.ascontiguousarray(np.stack([found[i] for i in wanted]))

    # -- episodes -----------------------------------------------------------------------------------------------

    def episode(self, description: EpisodeDescription) -> Episode:
        """The images of ``description`` (from :meth:`sampler`), one class file open at a time."""
        support, query = [], []
        for cls, s_idx, q_idx in zip(description.classes.tolist(), description.support_indices,
                                     description.query_indices):
            images = self.read_images(cls, np.concatenate([s_idx, q_idx]))
            support.append(images[:len(s_idx)])
            query.append(images[len(s_idx):])
        labels = np.arange(description.ways, dtype=np.int64)
        return Episode(
            support_x=np.concatenate(support), support_y=np.repeat(labels, [len(s) for s in support]),
            query_x=np.concatenate(query), query_y=np.repeat(labels, [len(q) for q in query]),
            classes=description.classes.copy(), description=description, source=self.name)

    def sampler(self, split: str, config: EpisodeConfig | None = None, *,
                seed: int | np.random.Generator | None = None, **options: Any) -> EpisodeSampler:
        """An :class:`EpisodeSampler` over ``split`` of this source (``options``: EpisodeConfig fields)."""
        return EpisodeSampler(self.spec, split, config, seed=seed, **options)

    def episodes(self, split: str, count: int | None = None, config: EpisodeConfig | None = None, *,
                 seed: int | np.random.Generator | None = None, **options: Any) -> Iterator[Episode]:
        """``count`` episodes of ``split`` (endless for None), drawn by one seeded sampler."""
        sampler = self.sampler(split, config, seed=seed, **options)
        n = 0
        while count is None or n < count:
            yield self.episode(sampler.sample())
            n += 1
