"""The update-rule interface."""

from __future__ import annotations

from torch import Tensor, nn

from innerloop.params import Params

State = dict[str, Tensor]
Info = dict[str, Tensor]


class UpdateRule(nn.Module):
    """One inner step ``theta_{j+1}, state_{j+1} = rule(theta_j, g_j, state_j, j)``.

    ``info`` carries per-step diagnostics (e.g. ALFA's generated learning rates) as tensors, so
    they batch under ``vmap``; the trainer checks them for non-finite values.
    """

    #: number of inner steps the rule's per-step meta-parameters were built for (None: any)
    steps: int | None = None

    def init_state(self, params: Params) -> State:
        return {}

    def forward(self, params: Params, grads: Params, state: State, step: int) -> tuple[Params, State, Info]:
        raise NotImplementedError

    def step_index(self, step: int) -> int:
        """Index of the per-step meta-parameter used at ``step``.

        Steps beyond those trained (evaluation with more steps) reuse the last trained step's value.
        """
        if self.steps is None:
            return step
        return min(step, self.steps - 1)
