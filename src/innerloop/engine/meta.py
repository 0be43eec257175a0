"""A meta-learner = init + rule + oracle + objective over a base learner, and its meta-step."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from innerloop.engine.checkpointed import UnrollPlan, checkpointed_unroll
from innerloop.engine.executor import choose_mode, is_ragged, map_tasks
from innerloop.engine.learner import Learner
from innerloop.engine.unroll import InnerLoop
from innerloop.errors import ConfigError
from innerloop.objectives.query import FinalQueryLoss, QueryObjective
from innerloop.oracles.autograd import AutogradOracle
from innerloop.params import Params
from innerloop.rules.base import UpdateRule


class MetaLearner(nn.Module):
    """Owns the meta-parameters (``init`` and ``rule`` modules) and computes meta-gradients.

    ``meta_backward(batch)`` accumulates ``d mean_i L_meta(task_i) / d meta`` into ``.grad`` of
    :meth:`parameters`, running the tasks with the executor chosen by :func:`choose_mode`.
    ``checkpoint`` > 0 stores the inner state every ``checkpoint`` steps and recomputes the rest
    in the backward pass (final-step objective only).
    """

    def __init__(
        self,
        learner: Learner,
        init: nn.Module,
        rule: UpdateRule,
        oracle: AutogradOracle | None = None,
        objective: QueryObjective | None = None,
        steps: int = 5,
        executor: str = "auto",
        checkpoint: int = 0,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        if steps < 1:
            raise ConfigError("inner.steps must be >= 1 (a meta-objective needs at least one inner step)")
        self.learner = learner
        self.init = init
        self.rule = rule
        self.oracle = oracle or AutogradOracle("second")
        self.objective = objective or FinalQueryLoss()
        self.steps = steps
        self.mode = choose_mode(learner, device, executor)
        if checkpoint < 0:
            raise ConfigError("train.checkpoint_unroll must be >= 0 (0 = off, c = keep every c-th inner state)")
        if checkpoint and not self.objective.final_only:
            raise ConfigError("a checkpointed unroll supports only the final-step objective: set objective.kind = 'final'")
        self.checkpoint = checkpoint
        self.loop = InnerLoop(learner, rule, self.oracle)

    def start(self) -> tuple[Params, Params]:
        """(theta_0 for the adapted tensors, outer-only tensors such as norm affine)."""
        full = self.init()
        return {n: full[n] for n in self.learner.inner}, {n: full[n] for n in self.learner.outer}

    # ------------------------------------------------------------------ meta-training
    def meta_backward(self, batch: Sequence[Tensor], epoch: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        """Backpropagate the mean meta-loss of a task batch; returns per-task losses and diagnostics.

        ``batch`` is ``(xs, ys, xq, yq)`` with a leading task dimension, or a list of per-task
        ``(xs, ys, xq, yq)`` tuples for tasks that cannot be stacked (run by the loop).
        """
        theta0, static = self.start()
        n = len(batch) if is_ragged(batch) else batch[0].shape[0]
        if self.checkpoint and is_ragged(batch):
            raise ConfigError("the checkpointed unroll needs stacked tasks; set train.checkpoint_unroll = 0 for ragged batches")
        if self.checkpoint:
            return self._checkpointed_backward(theta0, static, batch)
        weights = self.objective.step_weights(self.steps, epoch)

        def task(xs, ys, xq, yq):
            return self.loop.meta_loss(theta0, static, xs, ys, xq, yq, weights)

        return map_tasks(task, batch, self.mode, backward=True, scale=1.0 / n)

    def _checkpointed_backward(self, theta0: Params, static: Params, batch: Sequence[Tensor]):
        xs, ys, xq, yq = batch
        n = xs.shape[0]
        names = list(self.learner.inner)
        meta = [t for t in list(self.rule.parameters()) + list(static.values())]

        def query_loss(params, x, y):
            return self.learner.loss({**static, **params}, x, y)

        def plan(x, y, batched):
            return UnrollPlan(self.loop, names, static, meta, x, y, self.steps, self.checkpoint, batched)

        if self.mode == "vmap":
            p = plan(xs, ys, True)
            start = {k: v.expand(n, *v.shape) for k, v in theta0.items()}
            final = checkpointed_unroll(p, start)
            losses = torch.vmap(query_loss)(final, xq, yq)
            losses.mean().backward()
            return losses.detach(), p.infos
        losses, infos = [], []
        for i in range(n):
            p = plan(xs[i], ys[i], False)
            final = checkpointed_unroll(p, theta0)
            loss = query_loss(final, xq[i], yq[i])
            (loss / n).backward()
            losses.append(loss.detach())
            infos.append(p.infos)
        aux = {k: torch.stack([a[k] for a in infos]) for k in infos[0]} if infos and infos[0] else {}
        return torch.stack(losses), aux

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, batch: Sequence[Tensor], steps: int | None = None, chunk: int = 100) -> tuple[Tensor, dict]:
        """Adapt each task on its support set for ``steps`` and return the query metric per task.

        The inner loop needs gradients, which ``torch.func.grad`` computes even under ``no_grad``;
        no meta-graph is built.
        """
        steps = self.steps if steps is None else steps
        if steps < 0:
            raise ConfigError("evaluation steps must be >= 0")
        theta0, static = self.start()
        theta0 = {k: v.detach() for k, v in theta0.items()}
        static = {k: v.detach() for k, v in static.items()}

        def task(xs, ys, xq, yq):
            params = dict(theta0)
            state = self.rule.init_state(params)
            params, state, infos, _ = self.loop.run(params, state, static, xs, ys, 0, steps)
            from innerloop.engine.unroll import stack_infos

            return self.learner.metric({**static, **params}, xq, yq), stack_infos(infos)

        return map_tasks(task, batch, "loop" if is_ragged(batch) else self.mode, chunk=chunk)
