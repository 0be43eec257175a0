"""Exact gradients by ``torch.func.grad`` (second order) or detached from the meta-graph (first order)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from innerloop.params import Params

ORDERS = ("second", "first")


class AutogradOracle:
    r"""``g = \nabla_\theta L(D; \theta)``.

    ``order="second"`` keeps ``g`` differentiable with respect to the meta-parameters (MAML's
    second-order meta-gradient); ``order="first"`` detaches it (FO-MAML: ``dg/dphi`` is dropped).
    Uses ``torch.func.grad_and_value`` so it runs inside ``torch.func.vmap``. One loss query per call.
    """

    def __init__(self, order: str = "second"):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.order = order

    def __call__(self, loss_fn: Callable[[Params], Tensor], params: Params) -> tuple[Tensor, Params, int]:
        grads, loss = torch.func.grad_and_value(loss_fn)(params)
        if self.order == "first":
            grads = {k: g.detach() for k, g in grads.items()}
        return loss, grads, 1
