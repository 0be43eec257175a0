"""Sinusoid regression tasks (MAML section 5.1; ALFA Table 8).

    y = A * sin(w * x + phi),  A ~ U[0.1, 5],  w ~ U[0.8, 1.2],  phi ~ U[0, pi],  x ~ U[-5, 5]

Tasks are drawn from an explicit ``torch.Generator``, so a batch is a pure function of its seed:
training batch ``i`` uses seed ``(seed, i)`` and the evaluation set is a fixed seed shared by all
methods (paired comparisons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from innerloop.errors import ConfigError


def _seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (stable across processes, unlike ``hash``)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


@dataclass
class SinusoidTasks:
    """Samples sinusoid tasks with ``shots`` support and ``query`` query points each."""

    shots: int = 10
    query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    frequency: tuple[float, float] = (0.8, 1.2)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def __post_init__(self):
        if self.shots < 1 or self.query < 1:
            raise ConfigError(f"task.shots ({self.shots}) and task.query ({self.query}) must be >= 1")
        for name in ("amplitude", "frequency", "phase", "x_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"task.{name} = [{lo}, {hi}] is empty: the first bound must be <= the second")

    def sample(
        self, n: int, generator: torch.Generator, query: int | None = None, dtype=torch.float32, device="cpu"
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``n`` tasks: ``xs [n, k, 1], ys [n, k, 1], xq [n, q, 1], yq [n, q, 1]``."""
        q = self.query if query is None else query
        u = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)
        amp = self.amplitude[0] + (self.amplitude[1] - self.amplitude[0]) * u(n, 1, 1)
        freq = self.frequency[0] + (self.frequency[1] - self.frequency[0]) * u(n, 1, 1)
        phase = self.phase[0] + (self.phase[1] - self.phase[0]) * u(n, 1, 1)
        x = self.x_range[0] + (self.x_range[1] - self.x_range[0]) * u(n, self.shots + q, 1)
        y = amp * torch.sin(freq * x + phase)
        x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
        k = self.shots
        return x[:, :k], y[:, :k], x[:, k:], y[:, k:]

    def train_batch(self, n: int, seed: int, iteration: int, **kw) -> tuple[Tensor, ...]:
        return self.sample(n, torch.Generator().manual_seed(_seed(seed, iteration)), **kw)

    def eval_set(self, n: int, seed: int, query: int, **kw) -> tuple[Tensor, ...]:
        """The fixed evaluation tasks: the same for every method given ``(seed, shots, query)``."""
        return self.sample(n, torch.Generator().manual_seed(_seed(seed, 0xE7A1)), query=query, **kw)
