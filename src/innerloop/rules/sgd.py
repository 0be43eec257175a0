"""Plain gradient descent with a fixed rate (MAML's inner loop)."""

from __future__ import annotations

from innerloop.params import Params
from innerloop.rules.base import Info, State, UpdateRule


class SGD(UpdateRule):
    r"""``theta_{j+1} = theta_j - alpha * g_j`` with a fixed, not meta-learned, ``alpha``."""

    def __init__(self, lr: float = 0.01):
        super().__init__()
        self.lr = lr

    def forward(self, params: Params, grads: Params, state: State, step: int) -> tuple[Params, State, Info]:
        return {n: p - self.lr * grads[n] for n, p in params.items()}, state, {}
