"""A victim that can only be queried: any gradient flowing into it raises; records each call's grad mode."""

from __future__ import annotations

import torch
from torch import nn


class _NoBackward(torch.autograd.Function):
    """Identity whose backward raises (functorch-style, so it also runs under torch.func.grad and vmap)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        raise AssertionError("backward was called through the black-box victim")


class ForwardOnly(nn.Module):
    """Wraps ``victim``; ``calls`` gets one bool per query: was autograd recording it?"""

    def __init__(self, victim: nn.Module):
        super().__init__()
        self.victim = victim
        self.calls: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(torch.is_grad_enabled() or x.requires_grad)
        return self.victim(_NoBackward.apply(x))
