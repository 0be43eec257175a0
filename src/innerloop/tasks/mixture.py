"""Incongruous task batches: several task sources (each with its own base learner) in one meta-batch.

LFT meta-trains one fine-tuner on, e.g., MNIST tasks with an MLP and CIFAR-10 tasks with a CNN
(or MNIST- and CIFAR-sized perturbations). Each task's source is drawn at random (seeded by
``(seed, iteration)``), so a batch is a dict ``source -> (xs, ys, xq, yq)`` holding only the sources
drawn; :class:`~innerloop.engine.MetaLearner` runs each source on its own base learner and executor.
Evaluation uses ``n`` fixed tasks *per* evaluation source.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from innerloop.errors import ConfigError
from innerloop.tasks.sinusoid import _seed


class TaskMixture:
    """``sources``: name -> task family (:class:`EpisodeTasks`, or :class:`SinusoidTasks` for a regression
    source). ``eval_tasks``: name -> the family its test tasks come from instead (held-out classes, e.g.
    ``task.holdout_classes``); ``eval_query``: name -> test points per task for a source that takes no
    per-class count (a sinusoid's)."""

    def __init__(self, sources: Mapping[str, Any], train_sources: Sequence[str],
                 eval_sources: Sequence[str] | None = None, eval_tasks: Mapping[str, Any] | None = None,
                 eval_query: Mapping[str, int] | None = None):
        self.sources = dict(sources)
        self.train_sources = list(train_sources)
        self.eval_sources = list(eval_sources or train_sources)
        self.eval_tasks = {**self.sources, **dict(eval_tasks or {})}
        self.eval_query = dict(eval_query or {})
        for name in [*self.train_sources, *self.eval_sources]:
            if name not in self.sources:
                raise ConfigError(f"unknown task source {name!r}; known: {', '.join(self.sources)}")
        if not self.train_sources:
            raise ConfigError("task.sources is empty: name at least one source, e.g. [\"mnist\"]")

    def train_batch(self, n: int, seed: int, iteration: int, dtype=torch.float32, device="cpu") -> dict[str, tuple[Tensor, ...]]:
        rng = np.random.default_rng(_seed(seed, iteration, 0x3A7))
        picks = rng.integers(len(self.train_sources), size=n)
        out = {}
        for i, name in enumerate(self.train_sources):
            count = int((picks == i).sum())
            if count:
                out[name] = self.sources[name].train_batch(count, _seed(seed, i), iteration, dtype=dtype, device=device)
        return out

    def eval_batches(self, n: int, seed: int, query: int | None = None, chunk: int = 100, dtype=torch.float32,
                     device="cpu", sources: Sequence[str] | None = None) -> Iterator[dict[str, tuple[Tensor, ...]]]:
        """``n`` fixed tasks of each evaluation source (or of ``sources``), ``chunk`` at a time."""
        for name in sources or self.eval_sources:
            if name not in self.sources:
                raise ConfigError(f"unknown task source {name!r}; known: {', '.join(self.sources)}")
            # seeded by the source's name: a source's test tasks are the same alone or in a mixture
            src, key = self.eval_tasks[name], _seed(seed, *name.encode())
            if not hasattr(src, "eval_batches"):  # a regression source: its fixed test set, ``chunk`` tasks at a time
                q = self.eval_query.get(name, query)
                whole = src.eval_set(n, key, q if q is not None else src.query, dtype=dtype, device=device)
                for lo in range(0, n, chunk or n):
                    yield {name: tuple(t[lo:lo + (chunk or n)] for t in whole)}
                continue
            for batch in src.eval_batches(n, key, query, chunk, dtype=dtype, device=device):
                yield {name: batch}

    def eval_set(self, n: int, seed: int, query: int | None = None, dtype=torch.float32, device="cpu",
                 sources: Sequence[str] | None = None) -> dict[str, tuple[Tensor, ...]]:
        parts: dict[str, list[tuple[Tensor, ...]]] = {}
        for b in self.eval_batches(n, seed, query, n, dtype, device, sources):
            for k, v in b.items():
                parts.setdefault(k, []).append(v)
        return {k: tuple(torch.cat([p[i] for p in v]) for i in range(4)) for k, v in parts.items()}
