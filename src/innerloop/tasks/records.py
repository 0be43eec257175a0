"""Meta-Dataset episodes from record folders: variable-way, variable-shot tasks for training and evaluation.

Each source is a folder written by ``innerloop data to-records`` (or Meta-Dataset's own converter):
``dataset_spec.json`` and one ``{class_id}.tfrecords`` per class, read lazily by
:class:`~innerloop.data.metadataset.RecordSource`. Episodes follow Meta-Dataset's sampler
(:class:`~innerloop.data.metadataset.EpisodeSampler`): with ``ways = shots = query = None`` the number of
classes, the support shots of each class and the query size are drawn per episode (spec meta-dataset.md 1.4);
give integers for fixed N-way K-shot episodes.

Training episode batch ``i`` is a pure function of ``(seed, i)`` and draws from the TRAIN split of the
training sources (each task's source drawn at random); the evaluation episodes of a source are a fixed list
drawn from ``(seed, source name)`` on its TEST split, so every method is scored on the same episodes.

A variable-way task has fewer classes than the model has outputs (``max_ways``): its labels are ``0..w-1``, and
the learner masks the logits of classes above the largest label in the batch it scores
(:func:`innerloop.engine.learner.mask_absent_classes`), which is Meta-Dataset's slicing of the logits to the
episode's ways. Every class of a Meta-Dataset episode has at least one support and one query example, so the
largest label of either set is ``w - 1``. Episodes of unequal shapes are returned as a list of per-task tuples
(the engine runs them one by one); fixed-shape episodes are stacked (and can be vmapped).

Pixels: uint8 -> float ``x / 255``, then ``(x - mean) / std`` when given (``signed``: mean = std = 0.5, i.e.
Meta-Dataset's ``2 (x / 255 - 0.5)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from innerloop.errors import ConfigError
from innerloop.tasks.episodes import to_float
from innerloop.tasks.sinusoid import _seed
from innerloop.tasks.task import Task, TaskBatch


class RecordTasks:
    """Episodes of Meta-Dataset record sources.

    ``root``: the folder holding one record folder per source (``root/<source>/dataset_spec.json``);
    ``sources``: the training sources; ``eval_sources``: the evaluation sources (default: ``sources``);
    ``ways`` / ``shots`` / ``query``: ``None`` = Meta-Dataset's variable draw; ``max_ways``: the model's output
    width (Meta-Dataset's ``max_ways_upper_bound``, 50), the most classes an episode may have;
    ``image_size``, ``channels``: what every image is decoded to (grayscale sources are replicated to RGB for
    ``channels = 3``); ``cache_images``: decoded images kept in memory per source.
    """

    def __init__(self, root: str | Path, sources: Sequence[str], eval_sources: Sequence[str] | None = None, *,
                 ways: int | None = None, shots: int | None = None, query: int | None = None,
                 max_ways: int = 50, image_size: int = 84, channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 cache_images: int = 200_000, verify: bool = True, **episode_options):
        from innerloop.data.metadataset import RecordSource

        self.root = Path(root).expanduser()
        self.train_sources = list(sources)
        self.eval_sources = list(eval_sources or sources)
        if not self.train_sources:
            raise ConfigError("task.sources is empty: name at least one record source, e.g. [\"omniglot\"]")
        if ways is not None and ways > max_ways:
            raise ConfigError(f"task.ways = {ways} exceeds task.max_ways = {max_ways} (the model's outputs): raise "
                              "task.max_ways or lower task.ways")
        if ways is not None and ways < 2:
            raise ConfigError(f"task.ways = {ways}: classification episodes need at least 2 classes")
        self.ways, self.shots, self.query, self.max_ways = ways, shots, query, max_ways
        self.options = {"ways": ways, "shots": shots, "query": query, "max_ways_upper_bound": max_ways,
                        **episode_options}
        self.fixed = ways is not None and shots is not None and query is not None
        self.sources = {}
        for name in dict.fromkeys([*self.train_sources, *self.eval_sources]):
            folder = self.root / name
            if not (folder / "dataset_spec.json").is_file():
                ours = name in ("omniglot", "mnist", "cifar10")  # what innerloop data to-records converts
                how = f"`innerloop data to-records {name} --out {self.root}`" if ours else \
                    "Meta-Dataset's dataset_conversion tools"
                raise ConfigError(f"no Meta-Dataset records of {name!r} at {folder} (no dataset_spec.json): convert "
                                  f"them with {how} (or point task.records / $INNERLOOP_RECORDS at the folder holding "
                                  "them)")
            self.sources[name] = RecordSource(folder, image_size=image_size, channels=channels,
                                              cache_images=cache_images, verify=verify)
        self.image_size, self.channels = image_size, channels
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)
        self._samplers: dict[tuple[str, str], object] = {}
        for name in self.train_sources:  # an impossible configuration fails now, not mid-training
            self._sampler(name, "train")
        for name in self.eval_sources:
            self._sampler(name, "test")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def _sampler(self, source: str, split: str):
        key = (source, split)
        if key not in self._samplers:
            self._samplers[key] = self.sources[source].sampler(split, **self.options)
        return self._samplers[key]

    def _task(self, source: str, split: str, rng: np.random.Generator, dtype, device) -> Task:
        sampler = self._sampler(source, split)
        sampler.rng = rng
        ep = self.sources[source].episode(sampler.sample())
        xs, xq = (to_float(torch.from_numpy(x), self.mean, self.std).to(device=device, dtype=dtype)
                  for x in (ep.support_x, ep.query_x))
        ys, yq = (torch.from_numpy(y).to(device) for y in (ep.support_y, ep.query_y))
        return Task(xs, ys, xq, yq)

    def _pack(self, tasks: list[Task]) -> TaskBatch | list[Task]:
        shapes = {tuple(tuple(f.shape) for f in t) for t in tasks}
        return TaskBatch.stack(tasks) if len(shapes) == 1 else tasks

    def train_batch(self, n: int, seed: int, iteration: int, dtype=torch.float32, device="cpu"):
        """``n`` training episodes (TRAIN split; each task's source drawn uniformly), a pure function of
        ``(seed, iteration)``: stacked when their shapes agree, else a list of per-task tuples."""
        rng = np.random.default_rng(_seed(seed, iteration, 0x4D44))
        picks = rng.integers(len(self.train_sources), size=n)
        return self._pack([self._task(self.train_sources[int(p)], "train", rng, dtype, device) for p in picks])

    def eval_batches(self, n: int, seed: int, query: int | None = None, chunk: int = 100, dtype=torch.float32,
                     device="cpu", sources: Sequence[str] | None = None) -> Iterator[TaskBatch | list[Task]]:
        """``n`` fixed TEST-split episodes of each evaluation source (or of ``sources``), ``chunk`` at a time.
        ``query`` is ignored: the episode configuration decides the query size (as in Meta-Dataset)."""
        for name in sources or self.eval_sources:
            if name not in self.sources:
                raise ConfigError(f"unknown record source {name!r}; this run has {', '.join(self.sources)}")
            rng = np.random.default_rng(_seed(seed, 0xE7A1, *name.encode()))
            for lo in range(0, n, chunk or n):
                yield self._pack([self._task(name, "test", rng, dtype, device)
                                  for _ in range(min(chunk or n, n - lo))])
