"""The inner loop of one task, written once for every init, rule, oracle and objective.

    theta_0       = init()[inner]
    L_j, g_j      = oracle(L(D_inner; theta_j) [+ l_j(task state; theta_j)], key.at(j))
    theta_{j+1}   = rule(theta_j, g_j, state_j, j)
    L_meta        = sum_j w_j * L(D_meta; theta_{j+1})        (D_inner, D_meta = objective.split(task))

Everything is a pure function of tensors: it runs per task, or under ``torch.func.vmap`` over a
leading task dimension, with identical results. ``key`` (:class:`~innerloop.oracles.keyed.TaskKey`, or
None) is where a random oracle's numbers for step ``j`` come from. ``l_j`` is an optional learned inner loss
(:class:`~innerloop.objectives.learned_loss.LearnedInnerLoss`, MeTAL), fed the unlabelled meta-set inputs when
transductive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

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
    inner_loss: nn.Module | None = None  # learned extra loss l_j (MeTAL); None: the task loss alone
    log_meta: bool = False  # each meta-loss term is log L(D_meta; theta) (TrajectoryLoss(log=True))

    def support_loss_fn(self, static: Params, x: Tensor, y: Tensor):
        """The plain task loss on (x, y) as a function of the adapted params."""
        if not static:
            return lambda p: self.learner.loss(p, x, y)
        return lambda p: self.learner.loss({**static, **p}, x, y)

    def step_loss_fn(self, static: Params, x: Tensor, y: Tensor, x_query: Tensor | None, step: int, plain=None):
        """The loss the inner loop descends at ``step``: the task loss (``plain``, when given), plus the learned
        inner loss of that step when there is one (``x_query``: the unlabelled query inputs, or None)."""
        if self.inner_loss is None:
            return plain if plain is not None else self.support_loss_fn(static, x, y)
        learner, extra = self.learner, self.inner_loss

        def loss(p: Params) -> Tensor:
            full = {**static, **p} if static else p
            out_s = learner.forward(full, x)
            task = learner.loss_of(out_s, y, full)
            out_q = learner.forward(full, x_query) if extra.transductive and x_query is not None else None
            return task + extra(step, task, p, out_s, y, out_q)

        return loss

    def run(
        self, params: Params, state: State, static: Params, x: Tensor, y: Tensor, start: int, stop: int,
        key: TaskKey | None = None, x_query: Tensor | None = None,
    ) -> tuple[Params, State, list[dict[str, Tensor]], list[Tensor]]:
        """Steps ``start .. stop-1``; returns new params, state, per-step info and support losses.
        ``x_query``: unlabelled query inputs for a transductive learned inner loss (ignored without one)."""
        infos, losses = [], []
        plain = self.support_loss_fn(static, x, y)
        for j in range(start, stop):
            loss_fn = self.step_loss_fn(static, x, y, x_query, j, plain)
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
        plain = self.support_loss_fn(static, x_in, y_in)
        total = None
        infos, support = [], []
        for i, w in enumerate(weights):
            loss_fn = self.step_loss_fn(static, x_in, y_in, x_meta, start + i, plain)
            loss, grads, _ = self.oracle(loss_fn, params, None if key is None else key.at(start + i))
            params, state, info = self.rule(params, grads, state, start + i)
            infos.append(info)
            support.append(loss.detach())
            if w:
                term = self.learner.loss({**static, **params} if static else params, x_meta, y_meta)
                term = torch.log(term) if self.log_meta else term
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
