"""Random numbers keyed by (draw, task, step) instead of by position in one generator's stream.

A zeroth-order oracle draws ``q`` directions at every inner step of every task. Drawn from the global
generator, those numbers depend on everything drawn before them: how many tasks share one ``vmap`` call,
the evaluation chunk, the order of a threaded loop, and how a meta-batch is split over processes. Keyed
directions do not:

    u(task j, step c) = randn(q * d; generator seeded with mix(salt, c, j))

where ``salt`` is one 62-bit number drawn from the global generator per meta-batch (per evaluation call),
``j`` is the task's index in the whole batch and ``c`` the inner step (or :data:`ATTENUATION` for L2F's
gradient). Any split of a batch, in any order, on any number of processes, sees the same directions
(``innerloop.distributed`` relies on it).

:func:`keyed_normal` is a ``torch.library`` custom operator with its own ``vmap`` rule, so it runs inside
``torch.func.vmap`` over tasks: the batched task indices arrive as one tensor and each gets its own
generator (seeding one costs ~3 us; the draws themselves are ``torch.randn``'s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MASK64 = (1 << 64) - 1
ATTENUATION = -1  # the step key of L2F's attenuation gradient (inner steps are 0, 1, ...)


def mix(*words: int) -> int:
    """Fold integers into one 62-bit key (splitmix64's finaliser after each word); deterministic, any sizes."""
    h = 0x9E3779B97F4A7C15
    for w in words:
        h = (h ^ (w & MASK64)) & MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
        h ^= h >> 31
    return h >> 2  # fits a signed 64-bit operator argument


@torch.library.custom_op("innerloop::keyed_normal", mutates_args=())
def keyed_normal(index: Tensor, salt: int, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[*index.shape, n]`` standard normal numbers; row ``index[i]`` is ``randn(n)`` from a generator seeded
    with ``mix(salt, index[i])`` (the same row whatever else is drawn, on ``device``)."""
    rows = index.reshape(-1).tolist()
    g = torch.Generator(device=device)
    out = torch.empty(len(rows), n, dtype=dtype, device=device)
    for r, j in enumerate(rows):
        g.manual_seed(mix(salt, j))
        torch.randn(n, generator=g, dtype=dtype, device=device, out=out[r])
    return out.reshape(*index.shape, n)


@keyed_normal.register_fake
def _(index: Tensor, salt: int, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.empty(*index.shape, n, dtype=dtype, device=device)


def _batched(info, in_dims, index, salt, n, dtype, device):
    """vmap rule: a batch of task indices is one call with a leading index dimension."""
    if in_dims[0] is None:
        return keyed_normal(index, salt, n, dtype, device), None
    return keyed_normal(index.movedim(in_dims[0], 0), salt, n, dtype, device), 0


torch.library.register_vmap("innerloop::keyed_normal", _batched)


@dataclass(frozen=True)
class TaskKey:
    """Where one task's random numbers come from: its index in the whole batch (an int64 tensor, batched under
    ``vmap``) and the batch's salt; :meth:`at` gives the key of one inner step."""

    index: Tensor
    salt: int

    def at(self, step: int) -> "TaskKey":
        return TaskKey(self.index, mix(self.salt, step))

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        n = 1
        for s in shape:
            n *= s
        return keyed_normal(self.index, self.salt, n, dtype, torch.device(device)).reshape(shape)


def draw_salt() -> int:
    """One 62-bit salt from the global generator (so seeding torch seeds the keyed draws too)."""
    return int(torch.randint(0, 1 << 62, (), dtype=torch.int64))


def task_indices(first: int, n: int) -> Tensor:
    """The whole-batch indices of ``n`` tasks starting at ``first`` (kept on the CPU: only their values matter)."""
    return torch.arange(first, first + n, dtype=torch.int64)
