"""Exact gradients, second order (differentiable) or first order (detached from the meta-graph).

Two backends compute the same gradient: ``torch.func.grad_and_value`` (needed under ``torch.func.vmap``)
and ``torch.autograd.grad`` (the plain per-task loop: fewer Python calls, and first order builds no
second-order graph at all). ``backend="auto"`` picks ``autograd`` outside any ``torch.func`` transform.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor

from innerloop.params import Params
from innerloop.transforms import inside_transform

ORDERS = ("second", "first")
BACKENDS = ("auto", "func", "autograd")


class AutogradOracle:
    r"""``g = \nabla_\theta L(D; \theta)``.

    ``order="second"`` keeps ``g`` differentiable with respect to the meta-parameters (MAML's
    second-order meta-gradient); ``order="first"`` detaches it (FO-MAML: ``dg/dphi`` is dropped).
    ``backend``: ``"func"`` (``torch.func.grad_and_value``, runs inside ``torch.func.vmap``),
    ``"autograd"`` (``torch.autograd.grad``, outside transforms only) or ``"auto"`` (``autograd`` when no
    ``torch.func`` transform is active, else ``func``). One loss query per call.
    """

    def __init__(self, order: str = "second", backend: str = "auto"):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.order = order
        self.backend = backend

    draws = False  # deterministic: no random numbers

    def __call__(self, loss_fn: Callable[[Params], Tensor], params: Params, key: object = None
                 ) -> tuple[Tensor, Params, int]:
        """``key`` (a :class:`~innerloop.oracles.keyed.TaskKey`) is accepted like every oracle's and unused."""
        if self.backend == "func" or (self.backend == "auto" and inside_transform()):
            grads, loss = torch.func.grad_and_value(loss_fn)(params)
            if self.order == "first":
                grads = {k: g.detach() for k, g in grads.items()}
            return loss, grads, 1
        return self._autograd(loss_fn, params)

    def _autograd(self, loss_fn: Callable[[Params], Tensor], params: Params) -> tuple[Tensor, Params, int]:
        """``torch.autograd.grad`` form: second order keeps the graph (``create_graph``) when grad mode is
        on; first order, or grad mode off (evaluation), differentiates detached copies, so no graph
        reaches the meta-parameters and none is kept."""
        enabled = torch.is_grad_enabled()
        keep = enabled and self.order == "second"
        with contextlib.nullcontext() if enabled else torch.enable_grad():
            # second order: each tensor through a fresh alias, so its gradient is the partial derivative even when
            # one input is computed from another (Proto-MAML's head is a function of the backbone's theta_0:
            # autograd.grad with respect to the backbone itself would also count the path through the head)
            leaves = {k: v.view_as(v) if keep and v.requires_grad else v.detach().requires_grad_()
                      for k, v in params.items()}
            loss = loss_fn(leaves)
            grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=keep, materialize_grads=True)
        if not keep:
            loss = loss.detach()
        return loss, dict(zip(leaves, grads)), 1
