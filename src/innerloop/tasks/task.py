"""Named task containers: what a meta-learner adapts on (support) and is scored on (query).

    Task(support_x, support_y, query_x, query_y)          # one task
    TaskBatch(support_x, support_y, query_x, query_y)     # n tasks stacked: every field has a leading task dim

Both are ``NamedTuple`` s, so they are also the plain ``(xs, ys, xq, yq)`` tuples the engine has always taken:
anything that accepts a tuple accepts them, and a tuple may be passed wherever they are named.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from innerloop.errors import ConfigError


class Task(NamedTuple):
    """One few-shot task: ``support_x [k, ...]``, ``support_y [k, ...]``, ``query_x [q, ...]``, ``query_y [q, ...]``."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor


class TaskBatch(NamedTuple):
    """``n`` tasks of equal shapes, stacked: ``support_x [n, k, ...]`` and so on."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    @classmethod
    def stack(cls, tasks: list[Task] | list[tuple]) -> "TaskBatch":
        """Stack tasks of equal shapes (a ragged list may also be passed to the engine as it is)."""
        import torch

        if not tasks:
            raise ConfigError("TaskBatch.stack needs at least one task")
        return cls(*(torch.stack([t[i] for t in tasks]) for i in range(4)))

    def task(self, i: int) -> Task:
        return Task(*(f[i] for f in self))


def check_batch(batch: Any, what: str = "a batch") -> None:
    """A one-line ConfigError unless ``batch`` is a TaskBatch / 4-tuple of tensors with a leading task dimension, or
    a list of per-task 4-tuples (ragged tasks); (a dict ``family -> batch`` is checked family by family)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 4 and all(isinstance(t, Tensor) for t in batch):
        if isinstance(batch, Task) or any(t.dim() == 0 for t in batch):
            raise ConfigError(f"{what} is one Task; stack tasks with TaskBatch.stack([...]) (or pass [task] as a "
                              "list of tasks)")
        sizes = {t.shape[0] for t in batch}
        if len(sizes) != 1:
            raise ConfigError(f"{what}: support_x, support_y, query_x and query_y must have the same leading "
                              f"(task) dimension, got {[t.shape[0] for t in batch]}")
        return
    if isinstance(batch, list) and batch and all(
            isinstance(t, (tuple, list)) and len(t) == 4 and all(isinstance(x, Tensor) for x in t) for t in batch):
        return
    raise ConfigError(f"{what} must be a TaskBatch (support_x, support_y, query_x, query_y with a leading task "
                      f"dimension), a list of Task, or a dict family -> batch; got {_describe(batch)}")


def _describe(obj: Any) -> str:
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)} ({', '.join(type(x).__name__ for x in obj[:4])})"
    return type(obj).__name__
