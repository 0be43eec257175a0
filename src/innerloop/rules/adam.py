"""Adam as an inner-loop rule (a hand-designed baseline for learned fine-tuners, not meta-learned).

    m_{j+1} = b1 m_j + (1 - b1) g_j,    v_{j+1} = b2 v_j + (1 - b2) g_j^2
    theta_{j+1} = theta_j - lr * (m_{j+1} / (1 - b1^{j+1})) / (sqrt(v_{j+1} / (1 - b2^{j+1})) + eps)

(Kingma & Ba 2015, Algorithm 1; the form of ``torch.optim.Adam`` without weight decay.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from innerloop.params import Params
from innerloop.rules.base import Info, State, UpdateRule


def adam_moments(m: Tensor, v: Tensor, g: Tensor, betas: tuple[float, float], step: int
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(m_hat, v_hat, m, v)``: the moments after gradient ``g`` at inner step ``step`` (0-based), and their
    bias-corrected values ``m / (1 - b1^(step+1))``, ``v / (1 - b2^(step+1))``."""
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return m / (1 - b1 ** (step + 1)), v / (1 - b2 ** (step + 1)), m, v


class Adam(UpdateRule):
    """Adam with fixed ``lr``, ``betas`` and ``eps``; the moments are the rule's per-task state."""

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__()
        self.lr, self.betas, self.eps = lr, betas, eps

    def init_state(self, params: Params) -> State:
        return {**{f"m/{n}": torch.zeros_like(p) for n, p in params.items()},
                **{f"v/{n}": torch.zeros_like(p) for n, p in params.items()}}

    def forward(self, params: Params, grads: Params, state: State, step: int) -> tuple[Params, State, Info]:
        new_params, new_state = {}, {}
        for n, p in params.items():
            m_hat, v_hat, new_state[f"m/{n}"], new_state[f"v/{n}"] = adam_moments(
                state[f"m/{n}"], state[f"v/{n}"], grads[n], self.betas, step)
            new_params[n] = p - self.lr * m_hat / (v_hat.sqrt() + self.eps)
        return new_params, new_state, {}
