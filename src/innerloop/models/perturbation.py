"""A universal adversarial perturbation as a base learner (LFT section 4, spec section 12).

The optimizee is one image-shaped tensor delta; the frozen victim classifies clamp(x + delta):

    forward(x) = victim(clamp(x + delta, low, high))

The victim's weights are stored as buffers, so they are never inner-loop parameters: the only
parameter is ``delta`` (784 values for MNIST, 3,072 for CIFAR-10 — incongruous by construction).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters are buffers (constants), in eval mode."""
    out = copy.deepcopy(module).eval()
    for sub in out.modules():
        for name, p in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, p.detach().clone())
    return out


class Perturbation(nn.Module):
    def __init__(self, victim: nn.Module, shape: Sequence[int], bounds: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(tuple(shape)))
        self.victim = frozen_copy(victim)
        self.bounds = bounds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.victim((x + self.delta).clamp(*self.bounds))
