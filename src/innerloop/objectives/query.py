"""Meta-objectives: ``L_meta = sum_j w_j * L(D_meta; theta_{j+1})`` over the unrolled inner loop.

An objective chooses the step weights ``w`` and which data the inner loop and the meta-loss see
(:meth:`QueryObjective.split`):

* :class:`FinalQueryLoss` — query loss after the last step (MAML, ALFA);
* :class:`MultiStepLoss` — MAML++'s annealed multi-step loss;
* :class:`TrajectoryLoss` — LFT (validation loss along the trajectory, ``data="query"``) or L2O
  (training loss on the union of both splits along the trajectory, ``data="union"``).
"""

from __future__ import annotations

import torch
from torch import Tensor


class QueryObjective:
    """Base: inner loop on the support set, meta-loss on the query set."""

    def step_weights(self, steps: int, epoch: int) -> list[float]:
        raise NotImplementedError

    def split(self, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(inner-loop x, y, meta-loss x, y) for one task."""
        return xs, ys, xq, yq

    @property
    def final_only(self) -> bool:
        return False


class FinalQueryLoss(QueryObjective):
    """``w = (0, ..., 0, 1)``: query loss after the last inner step (MAML, ALFA)."""

    def step_weights(self, steps: int, epoch: int) -> list[float]:
        return [0.0] * (steps - 1) + [1.0]

    @property
    def final_only(self) -> bool:
        return True


class MultiStepLoss(QueryObjective):
    """MAML++ ``get_per_step_loss_importance_vector``.

    All weights start at 1/S; non-final weights decay by ``epoch / (S * msl_epochs)`` to a floor of
    0.03/S; the final weight grows by ``epoch * (S-1) / (S * msl_epochs)`` up to ``1 - (S-1) * 0.03/S``.
    From ``epoch >= msl_epochs`` on, only the final step counts.
    """

    def __init__(self, msl_epochs: int = 15):
        self.msl_epochs = msl_epochs

    def step_weights(self, steps: int, epoch: int) -> list[float]:
        if epoch >= self.msl_epochs:
            return FinalQueryLoss().step_weights(steps, epoch)
        decay = 1.0 / steps / self.msl_epochs
        floor = 0.03 / steps
        w = [max(1.0 / steps - epoch * decay, floor) for _ in range(steps - 1)]
        w.append(min(1.0 / steps + epoch * (steps - 1) * decay, 1.0 - (steps - 1) * floor))
        return w


WEIGHTS = ("uniform", "increasing", "final")
DATA = ("query", "union")


class TrajectoryLoss(QueryObjective):
    """LFT eq. 4 / L2O: ``sum_t w_t * L(D; theta_t)``, t = 1..T.

    ``weights``: ``"uniform"`` (w_t = 1, Andrychowicz et al.; default), ``"increasing"`` (w_t = t,
    ZO-L2L), ``"final"`` (w_T = 1 only, MAML-like). ``data``: ``"query"`` — the inner loop sees
    D_tr and the meta-loss D_val (LFT); ``"union"`` — both see D_tr u D_val (L2O).

    ``log = True`` sums ``w_t * log L(D; theta_t)`` instead: the meta-gradient of each term is that of the loss
    divided by its value, so a mixture of task families whose losses differ in scale (sinusoid MSE ~ 1-30,
    two-way cross-entropy ~ 0.7) weighs every family's relative progress alike [DESIGN: issue 23; the
    normalised-loss idea of learned-optimizer meta-training, e.g. Metz et al. 2019].
    """

    def __init__(self, weights: str = "uniform", data: str = "query", log: bool = False):
        if weights not in WEIGHTS or data not in DATA:
            raise ValueError(f"weights must be one of {WEIGHTS} and data one of {DATA}")
        self.weights, self.data, self.log = weights, data, log

    def step_weights(self, steps: int, epoch: int) -> list[float]:
        if self.weights == "uniform":
            return [1.0] * steps
        if self.weights == "increasing":
            return [float(t) for t in range(1, steps + 1)]
        return FinalQueryLoss().step_weights(steps, epoch)

    def split(self, xs, ys, xq, yq):
        if self.data == "union":
            x, y = torch.cat([xs, xq]), torch.cat([ys, yq])
            return x, y, x, y
        return xs, ys, xq, yq

    @property
    def final_only(self) -> bool:
        return self.weights == "final" and self.data == "query" and not self.log
