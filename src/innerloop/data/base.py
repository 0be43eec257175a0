"""The one in-memory form every dataset reader produces: a class-indexed image array.

Readers (Omniglot, MNIST, CIFAR-10, miniImageNet, ...) return :class:`ImageDataset` per split; the
episode sampler (:mod:`innerloop.tasks.episodes`) only needs ``images`` and ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageDataset:
    """``images``: uint8 ``[N, C, H, W]``; ``labels``: int64 ``[N]`` in ``0..len(class_names)-1``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)
    name: str = ""

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be [N] = [{self.images.shape[0]}], got {self.labels.shape}")
        self.labels = self.labels.astype(np.int64, copy=False)
        if not self.class_names:
            self.class_names = [str(c) for c in range(int(self.labels.max()) + 1 if len(self.labels) else 0)]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_indices(self) -> list[np.ndarray]:
        """Indices of each class's images, in class order (the episode sampler's view)."""
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(self.num_classes + 1))
        return [order[bounds[c]:bounds[c + 1]] for c in range(self.num_classes)]
