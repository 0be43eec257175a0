"""One task's adaptation as a user-facing object: the adapted weights of the user's model, ready to predict.

    adapted = meta.adapt(support_x, support_y)          # the meta-learner's init -> L2F -> rule x steps
    logits = adapted.predict(query_x)                   # functional_call of the model with the adapted weights
    model = adapted.module()                            # or a plain nn.Module copy holding them
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from innerloop.engine.learner import Learner
from innerloop.params import Params


@dataclass
class Adapted:
    """The result of adapting a meta-learner to one task.

    ``params``: every parameter of the model, in ``model.named_parameters()`` order (the adapted ones and the
    meta-learned ones the inner loop does not touch, e.g. norm affine weights); ``losses``: the support loss
    before each step; ``steps``: how many steps were taken."""

    learner: Learner
    params: Params
    steps: int
    losses: list[float] = field(default_factory=list)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The model's outputs on ``x`` (logits for a classifier) with the adapted weights."""
        return self.learner.forward(self.params, x)

    __call__ = predict

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """``predict(x).argmax(-1)``: class indices (0 .. ways-1, in the order of the support labels)."""
        return self.predict(x).argmax(-1)

    @torch.no_grad()
    def score(self, x: Tensor, y: Tensor) -> float:
        """The learner's metric (accuracy, MSE, ...) on ``(x, y)``."""
        return float(self.learner.score(self.predict(x), y))

    def state_dict(self) -> dict[str, Tensor]:
        """The adapted weights as a ``state_dict`` of the model (parameters only, detached)."""
        return {k: v.detach().clone() for k, v in self.params.items()}

    def module(self) -> nn.Module:
        """A copy of the model holding the adapted weights: a plain ``nn.Module``, independent of innerloop."""
        model = copy.deepcopy(self.learner.model)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name])
        return model
