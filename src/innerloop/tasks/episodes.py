"""N-way K-shot Q-query classification episodes over any class-indexed image dataset.

An episode draws ``ways`` classes without replacement, then ``shots + query`` distinct images of
each, and relabels the classes ``0..ways-1`` in random order. Training episode ``i`` is a pure
function of ``(seed, i)``; the evaluation episodes are a fixed list drawn from ``(seed, 0xE7A1)``
(600 by default), so every method is scored on the same tasks. Images are stored once as uint8 and
converted to float (``/255``, optionally normalised per channel) only for the sampled episodes.

Evaluation may use a different dataset than training (cross-domain, e.g. miniImageNet -> CUB):
pass ``eval_data``. LFT's tasks draw the support set (D_tr) from a training split and the query set
(D_val) from a test split of the same classes: pass ``query_data`` (then every episode, training
and evaluation, is drawn that way; evaluation episodes differ by seed). ``relabel=False`` keeps the
dataset's own labels (a victim classifier's label space) instead of ``0..ways-1``.
"""

from __future__ import annotations

import warnings
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
        with warnings.catch_warnings():  # cached arrays may be read-only; the sampler only reads them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
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


def to_float(x: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> Tensor:
    """uint8 pixels ``[N, C, H, W]`` -> float32 ``x / 255``, then ``(x - mean) / std`` per channel when given
    (``[1, C, 1, 1]``): what a model meta-trained on episodes sees (also :func:`innerloop.data.preprocess`)."""
    x = x.to(torch.float32).div_(255.0)
    if mean is not None:
        x = x.sub_(mean)
    if std is not None:
        x = x.div_(std)
    return x


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
        query_data: ImageDataset | None = None,
        relabel: bool = True,
    ):
        if ways < 2:
            raise ConfigError(f"task.ways = {ways}: classification episodes need at least 2 classes")
        if shots < 1 or query < 1 or eval_query < 1:
            raise ConfigError("task.shots, task.query and task.eval_query must all be >= 1")
        self.ways, self.shots, self.query, self.eval_query = ways, shots, query, eval_query
        self.relabel = relabel
        self.train = _Pool(train_data, "training")
        if query_data is not None:
            if eval_data is not None:
                raise ConfigError("pass either eval_data (cross-domain) or query_data (support/query splits), not both")
            if query_data.num_classes != train_data.num_classes:
                raise ConfigError(f"the query split has {query_data.num_classes} classes but the support split has "
                                  f"{train_data.num_classes}: both must index the same classes")
            self.eval = self.train
            self.train_q = self.eval_q = _Pool(query_data, "query")
            self.train.check(ways, shots, f"{shots}-shot training")
            self.train_q.check(ways, max(query, eval_query), f"{max(query, eval_query)}-query (task.query / task.eval_query)")
        else:
            self.eval = _Pool(eval_data if eval_data is not None else train_data, "evaluation")
            self.train_q, self.eval_q = self.train, self.eval
            self.train.check(ways, shots + query, f"{shots}-shot {query}-query training")
            self.eval.check(ways, shots + eval_query, f"{shots}-shot {eval_query}-query evaluation (task.eval_query)")
        c = train_data.images.shape[1]
        for pool in (self.eval, self.train_q):
            if pool.images.shape[1:] != self.train.images.shape[1:]:
                raise ConfigError(
                    f"{pool.what} images are {tuple(pool.images.shape[1:])} but training images are "
                    f"{tuple(self.train.images.shape[1:])}: load both datasets at the same image size and channels"
                )
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def _indices(self, pool: _Pool, qpool: _Pool, n: int, query: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Image indices ``[n, ways, shots + query]`` (support from ``pool``, query from ``qpool``;
        without replacement within a class when they are the same pool) and each task's classes ``[n, ways]``."""
        k, per = self.shots, self.shots + query
        idx = np.empty((n, self.ways, per), dtype=np.int64)
        classes = np.empty((n, self.ways), dtype=np.int64)
        usable = pool.usable if qpool is pool else np.intersect1d(pool.usable, qpool.usable)
        for t in range(n):
            chosen = rng.choice(usable, size=self.ways, replace=False)
            classes[t] = chosen
            for w, c in enumerate(chosen):
                members = pool.by_class[c]
                if qpool is pool:
                    idx[t, w] = members[rng.choice(len(members), size=per, replace=False)]
                else:
                    idx[t, w, :k] = members[rng.choice(len(members), size=k, replace=False)]
                    q_members = qpool.by_class[c]
                    idx[t, w, k:] = q_members[rng.choice(len(q_members), size=query, replace=False)]
        return idx, classes

    def _tensors(self, pool: _Pool, qpool: _Pool, idx: np.ndarray, classes: np.ndarray, query: int, dtype,
                 device) -> tuple[Tensor, ...]:
        n, k = idx.shape[0], self.shots
        sup = pool.images[torch.from_numpy(idx[:, :, :k].reshape(-1))]
        qry = qpool.images[torch.from_numpy(idx[:, :, k:].reshape(-1))]
        xs, xq = (self._float(x).view(n, -1, *self.image_shape).to(device=device, dtype=dtype) for x in (sup, qry))
        labels = (torch.arange(self.ways) if self.relabel else None)
        lab = labels.view(1, self.ways).expand(n, -1) if labels is not None else torch.from_numpy(classes)
        lab = lab.to(device)
        ys = lab.unsqueeze(-1).expand(n, self.ways, k).reshape(n, -1)
        yq = lab.unsqueeze(-1).expand(n, self.ways, query).reshape(n, -1)
        return xs, ys, xq, yq

    def _float(self, x: Tensor) -> Tensor:
        return to_float(x, self.mean, self.std)

    def train_batch(self, n: int, seed: int, iteration: int, dtype=torch.float32, device="cpu") -> tuple[Tensor, ...]:
        rng = np.random.default_rng(_seed(seed, iteration))
        idx, classes = self._indices(self.train, self.train_q, n, self.query, rng)
        return self._tensors(self.train, self.train_q, idx, classes, self.query, dtype, device)

    def eval_episodes(self, n: int, seed: int, query: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The fixed evaluation episodes as indices (``[n, ways, shots + query]``, ``[n, ways]``)."""
        q = self.eval_query if query is None else query
        if self.eval_q is self.eval:
            self.eval.check(self.ways, self.shots + q, f"{self.shots}-shot {q}-query evaluation (task.eval_query)")
        else:
            self.eval_q.check(self.ways, q, f"{q}-query evaluation (task.eval_query)")
        return self._indices(self.eval, self.eval_q, n, q, np.random.default_rng(_seed(seed, 0xE7A1)))

    def eval_set(self, n: int, seed: int, query: int | None = None, dtype=torch.float32, device="cpu") -> tuple[Tensor, ...]:
        q = self.eval_query if query is None else query
        idx, classes = self.eval_episodes(n, seed, q)
        return self._tensors(self.eval, self.eval_q, idx, classes, q, dtype, device)

    def eval_batches(self, n: int, seed: int, query: int | None = None, chunk: int = 100, dtype=torch.float32,
                     device="cpu") -> Iterator[tuple[Tensor, ...]]:
        """The same episodes as :meth:`eval_set`, materialised ``chunk`` at a time (bounded memory)."""
        q = self.eval_query if query is None else query
        idx, classes = self.eval_episodes(n, seed, q)
        for start in range(0, n, chunk):
            sl = slice(start, start + chunk)
            yield self._tensors(self.eval, self.eval_q, idx[sl], classes[sl], q, dtype, device)
