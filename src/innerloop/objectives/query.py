"""Query-loss meta-objectives: after the last step (MAML), or MAML++'s multi-step loss (MSL)."""

from __future__ import annotations


class QueryObjective:
    """``L_meta = sum_j w_j * L(D'; theta_{j+1})``; subclasses choose ``w``."""

    def step_weights(self, steps: int, epoch: int) -> list[float]:
        raise NotImplementedError

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
