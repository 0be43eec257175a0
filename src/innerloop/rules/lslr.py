"""Learned per-step, per-layer learning rates (MAML++ LSLR; Meta-SGD-style fixed rates)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from innerloop.params import Params, ordered_parameter_dict, safe_key
from innerloop.rules.base import Info, State, UpdateRule


class PerStepLayerLR(UpdateRule):
    r"""``theta_l <- theta_l - alpha[l, j] * g_l`` with ``alpha[l, :]`` (length S+1, init 0.01)
    meta-learned for every parameter tensor ``l`` (MAML++ ``LSLRGradientDescentLearningRule``)."""

    def __init__(self, names: Sequence[str], steps: int, lr: float = 0.01):
        super().__init__()
        self.names = list(names)
        self.steps = steps
        self.lrs = ordered_parameter_dict((safe_key(n), nn.Parameter(torch.full((steps + 1,), float(lr))))
                                          for n in names)

    def forward(self, params: Params, grads: Params, state: State, step: int) -> tuple[Params, State, Info]:
        j = self.step_index(step)
        lr = {n: self.lrs[safe_key(n)][j] for n in self.names}
        new = {n: p - lr[n] * grads[n] for n, p in params.items()}
        return new, state, {"lr": torch.stack([lr[n] for n in self.names])}
