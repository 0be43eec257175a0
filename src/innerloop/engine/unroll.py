"""The inner loop of one task, written once for every init, rule, oracle and objective.

    theta_0       = init()[inner]
    L_j, g_j      = oracle(L(D_inner; theta_j), key.at(j))
    theta_{j+1}   = rule(theta_j, g_j, state_j, j)
    L_meta        = sum_j w_j * L(D_meta; theta_{j+1})        (D_inner, D_meta = objective.split(task))

Everything is a pure function of tensors: it runs per task, or under ``torch.func.vmap`` over a
leading task dimension, with identical results. ``key`` (:class:`~innerloop.oracles.keyed.TaskKey`, or
None) is where a random oracle's numbers for step ``j`` come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from innerloop.engine.learner import Learner
from innerloop.oracles.keyed import TaskKey
from innerloop.params import Params
from innerloop.rules.base import State, UpdateRule


@dataclass
class InnerLoop:
    """The pieces one inner loop needs; ``static`` are outer-only params (e.g. norm affine)."""

    learner: Learner
    rule: UpdateRule
    oracle: object

    def support_loss_fn(self, static: Params, x: Tensor, y: Tensor):
        if not static:
            return lambda p: self.learner.loss(p, x, y)
        return lambda p: self.learner.loss({**static, **p}, x, y)

    def run(
        self, params: Params, state: State, static: Params, x: Tensor, y: Tensor, start: int, stop: int,
        key: TaskKey | None = None,
    ) -> tuple[Params, State, list[dict[str, Tensor]], list[Tensor]]:
        """Steps ``start .. stop-1``; returns new params, state, per-step info and support losses."""
        infos, losses = [], []
        loss_fn = self.support_loss_fn(static, x, y)
        for j in range(start, stop):
            loss, grads, _ = self.oracle(loss_fn, params, None if key is None else key.at(j))
            params, state, info = self.rule(params, grads, state, j)
            infos.append(info)
            losses.append(loss)
        return params, state, infos, losses

    def meta_loss(
        self,
        params: Params,
        state: State | None,
        static: Params,
        x_in: Tensor,
        y_in: Tensor,
        x_meta: Tensor,
        y_meta: Tensor,
        weights: Sequence[float],
        start: int = 0,
        key: TaskKey | None = None,
    ) -> tuple[Tensor, dict[str, Tensor], Params, State]:
        """``sum_j w_j L(D_meta; theta_{start+j+1})`` for one task from ``(params, state)`` at step
        ``start``; returns the loss, stacked diagnostics and the final ``(params, state)``."""
        if state is None:
            state = self.rule.init_state(params)
        loss_fn = self.support_loss_fn(static, x_in, y_in)
        total = None
        infos, support = [], []
        for i, w in enumerate(weights):
            loss, grads, _ = self.oracle(loss_fn, params, None if key is None else key.at(start + i))
            params, state, info = self.rule(params, grads, state, start + i)
            infos.append(info)
            support.append(loss.detach())
            if w:
                term = self.learner.loss({**static, **params} if static else params, x_meta, y_meta)
                term = term if w == 1 else w * term
                total = term if total is None else total + term
        if total is None:  # every weight zero (a truncated span before the scored steps)
            total = torch.zeros((), dtype=x_in.dtype, device=x_in.device)
        aux = stack_infos(infos)
        aux["support_loss"] = torch.stack(support)
        return total, aux, params, state


def stack_infos(infos: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """List over steps of info dicts -> dict of tensors with a leading step dimension (detached)."""
    if not infos or not infos[0]:
        return {}
    return {k: torch.stack([i[k].detach() for i in infos]) for k in infos[0]}
