"""The inner loop of one task, written once for every rule, oracle and objective.

    theta_0       = init()[inner]
    L_j, g_j      = oracle(L(D; theta_j))
    theta_{j+1}   = rule(theta_j, g_j, state_j, j)
    L_meta        = sum_j w_j * L(D'; theta_{j+1})

Everything is a pure function of tensors: it runs per task, or under ``torch.func.vmap`` over a
leading task dimension, with identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from innerloop.engine.learner import Learner
from innerloop.params import Params
from innerloop.rules.base import State, UpdateRule


@dataclass
class InnerLoop:
    """The pieces one inner loop needs; ``static`` are outer-only params (e.g. norm affine)."""

    learner: Learner
    rule: UpdateRule
    oracle: object

    def support_loss_fn(self, static: Params, x: Tensor, y: Tensor):
        return lambda p: self.learner.loss({**static, **p}, x, y)

    def run(
        self, params: Params, state: State, static: Params, x: Tensor, y: Tensor, start: int, stop: int
    ) -> tuple[Params, State, list[dict[str, Tensor]], list[Tensor]]:
        """Steps ``start .. stop-1``; returns new params, state, per-step info and support losses."""
        infos, losses = [], []
        loss_fn = self.support_loss_fn(static, x, y)
        for j in range(start, stop):
            loss, grads, _ = self.oracle(loss_fn, params)
            params, state, info = self.rule(params, grads, state, j)
            infos.append(info)
            losses.append(loss)
        return params, state, infos, losses

    def meta_loss(
        self,
        theta0: Params,
        static: Params,
        xs: Tensor,
        ys: Tensor,
        xq: Tensor,
        yq: Tensor,
        weights: Sequence[float],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``sum_j w_j L(D'; theta_{j+1})`` for one task, plus stacked diagnostics."""
        params = {n: theta0[n] for n in self.learner.inner}
        state = self.rule.init_state(params)
        loss_fn = self.support_loss_fn(static, xs, ys)
        total = torch.zeros((), dtype=xs.dtype, device=xs.device)
        infos, support = [], []
        for j, w in enumerate(weights):
            loss, grads, _ = self.oracle(loss_fn, params)
            params, state, info = self.rule(params, grads, state, j)
            infos.append(info)
            support.append(loss.detach())
            if w:
                total = total + w * self.learner.loss({**static, **params}, xq, yq)
        aux = stack_infos(infos)
        aux["support_loss"] = torch.stack(support)
        return total, aux


def stack_infos(infos: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """List over steps of info dicts -> dict of tensors with a leading step dimension (detached)."""
    if not infos or not infos[0]:
        return {}
    return {k: torch.stack([i[k].detach() for i in infos]) for k in infos[0]}
