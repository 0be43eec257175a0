"""N-way K-shot Q-query classification episodes over any class-indexed image dataset.

An episode draws ``ways`` classes without replacement, then ``shots + query`` distinct images of
each, and relabels the classes ``0..ways-1`` in random order. Training episode ``i`` is a pure
function of ``(seed, i)``; the evaluation episodes are a fixed list drawn from ``(seed, 0xE7A1)``
(600 by default), so every method is scored on the same tasks. Images are stored once as uint8 and
converted to float (``/255``, optionally normalised per channel) only for the sampled episodes.

Evaluation may use a different dataset than training (cross-domain, e.g. miniImageNet -> CUB):
pass ``eval_data``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from innerloop.data.base import ImageDataset
from innerloop.errors import ConfigError
from innerloop.tasks.sinusoid import _seed


class _Pool:
    """One dataset as a uint8 tensor plus each class's image indices."""

    def __init__(self, data: ImageDataset, what: str):
        self.data = data
        self.images = torch.from_numpy(np.ascontiguousarray(data.images))
        self.by_class = [idx for idx in data.class_indices()]
        sizes = np.array([len(i) for i in self.by_class])
        self.usable = np.flatnonzero(sizes > 0)
        self.min_size = int(sizes[self.usable].min()) if len(self.usable) else 0
        self.what = what

    def check(self, ways: int, per_class: int, which: str) -> None:
        name = self.data.name or "dataset"
        if ways > len(self.usable):
            raise ConfigError(
                f"{ways}-way episodes need {ways} classes but the {self.what} split of {name} has "
                f"{len(self.usable)}: lower task.ways"
            )
        if per_class > self.min_size:
            raise ConfigError(
                f"{which} needs {per_class} images per class but the smallest class in the {self.what} split of "
                f"{name} has {self.min_size}: lower task.shots or task.{'eval_query' if 'eval' in which else 'query'}"
            )


class EpisodeTasks:
    """Samples ``(xs [n, W*K, C, H, W], ys [n, W*K], xq [n, W*Q, ...], yq [n, W*Q])`` batches.

    Support and query are ordered class by class; labels are int64. ``mean``/``std`` (per channel,
    on the [0, 1] scale) normalise the pixels when given (ALFA's miniImageNet uses the ImageNet ones).
    """

    def __init__(
        self,
        train_data: ImageDataset,
        ways: int = 5,
        shots: int = 1,
        query: int = 15,
        eval_data: ImageDataset | None = None,
        eval_query: int = 15,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        if ways < 2:
            raise ConfigError(f"task.ways = {ways}: classification episodes need at least 2 classes")
        if shots < 1 or query < 1 or eval_query < 1:
            raise ConfigError("task.shots, task.query and task.eval_query must all be >= 1")
        self.ways, self.shots, self.query, self.eval_query = ways, shots, query, eval_query
        self.train = _Pool(train_data, "training")
        self.eval = _Pool(eval_data if eval_data is not None else train_data, "evaluation")
        self.train.check(ways, shots + query, f"{shots}-shot {query}-query training")
        self.eval.check(ways, shots + eval_query, f"{shots}-shot {eval_query}-query evaluation (task.eval_query)")
        c = train_data.images.shape[1]
        if self.eval.images.shape[1:] != self.train.images.shape[1:]:
            raise ConfigError(
                f"evaluation images are {tuple(self.eval.images.shape[1:])} but training images are "
                f"{tuple(self.train.images.shape[1:])}: load both datasets at the same image size and channels"
            )
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def _indices(self, pool: _Pool, n: int, query: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Image indices ``[n, ways, shots + query]`` and the class each label stands for ``[n, ways]``."""
        per = self.shots + query
        idx = np.empty((n, self.ways, per), dtype=np.int64)
        classes = np.empty((n, self.ways), dtype=np.int64)
        for t in range(n):
            chosen = rng.choice(pool.usable, size=self.ways, replace=False)
            classes[t] = chosen
            for w, c in enumerate(chosen):
                members = pool.by_class[c]
                idx[t, w] = members[rng.choice(len(members), size=per, replace=False)]
        return idx, classes

    def _tensors(self, pool: _Pool, idx: np.ndarray, query: int, dtype, device) -> tuple[Tensor, ...]:
        n, k = idx.shape[0], self.shots
        x = pool.images[torch.from_numpy(idx.reshape(-1))].to(torch.float32).div_(255.0)
        if self.mean is not None:
            x = x.sub_(self.mean)
        if self.std is not None:
            x = x.div_(self.std)
        x = x.view(n, self.ways, self.shots + query, *self.image_shape).to(device=device, dtype=dtype)
        labels = torch.arange(self.ways, device=device).view(1, self.ways, 1)
        xs = x[:, :, :k].reshape(n, self.ways * k, *self.image_shape)
        xq = x[:, :, k:].reshape(n, self.ways * query, *self.image_shape)
        ys = labels.expand(n, self.ways, k).reshape(n, -1)
        yq = labels.expand(n, self.ways, query).reshape(n, -1)
        return xs, ys, xq, yq

    def train_batch(self, n: int, seed: int, iteration: int, dtype=torch.float32, device="cpu") -> tuple[Tensor, ...]:
        rng = np.random.default_rng(_seed(seed, iteration))
        idx, _ = self._indices(self.train, n, self.query, rng)
        return self._tensors(self.train, idx, self.query, dtype, device)

    def eval_episodes(self, n: int, seed: int, query: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The fixed evaluation episodes as indices (``[n, ways, shots + query]``, ``[n, ways]``)."""
        q = self.eval_query if query is None else query
        self.eval.check(self.ways, self.shots + q, f"{self.shots}-shot {q}-query evaluation (task.eval_query)")
        return self._indices(self.eval, n, q, np.random.default_rng(_seed(seed, 0xE7A1)))

    def eval_set(self, n: int, seed: int, query: int | None = None, dtype=torch.float32, device="cpu") -> tuple[Tensor, ...]:
        q = self.eval_query if query is None else query
        idx, _ = self.eval_episodes(n, seed, q)
        return self._tensors(self.eval, idx, q, dtype, device)

    def eval_batches(self, n: int, seed: int, query: int | None = None, chunk: int = 100, dtype=torch.float32,
                     device="cpu") -> Iterator[tuple[Tensor, ...]]:
        """The same episodes as :meth:`eval_set`, materialised ``chunk`` at a time (bounded memory)."""
        q = self.eval_query if query is None else query
        idx, _ = self.eval_episodes(n, seed, q)
        for start in range(0, n, chunk):
            yield self._tensors(self.eval, idx[start:start + chunk], q, dtype, device)
