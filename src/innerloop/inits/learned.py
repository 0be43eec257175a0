"""Meta-learned initialisation (MAML): theta_0 is a meta-parameter trained by the outer loop."""

from __future__ import annotations

import torch
from torch import nn

from innerloop.params import Params, ordered_parameter_dict, safe_key


class LearnedInit(nn.Module):
    """Holds a trainable copy of every parameter of ``model``; ``forward()`` returns theta_0.

    Normalisation affine parameters are included: they are meta-learned even though the inner
    loop does not adapt them.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names = [n for n, _ in model.named_parameters()]
        self.values = ordered_parameter_dict(
            (safe_key(n), nn.Parameter(p.detach().clone())) for n, p in model.named_parameters()
        )

    def forward(self) -> Params:
        return {n: self.values[safe_key(n)] for n in self.names}
