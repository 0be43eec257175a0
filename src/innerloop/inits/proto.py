"""Proto-MAML (Triantafillou et al., ICLR 2020): each task's output layer starts at its support prototypes.

With phi(x; theta_0) the input of the model's output layer (its last ``nn.Linear``, or the module named
``head``) under the *un-adapted* parameters, and the support examples of class k:

    c_k       = mean_{i: y_i = k} phi(x_i; theta_0)                      (plain mean, not normalised)
    W_k       = 2 c_k,      b_k = -||c_k||^2                             (squared norm)

so that at step 0 the logits ``W_k . phi(x) + b_k = -||phi(x) - c_k||^2 + ||phi(x)||^2`` are ProtoNet's
squared-Euclidean logits up to a per-example constant, which the softmax ignores [CODE meta-dataset
``MAMLLearner``, spec meta-dataset.md 1.1]. The rest of theta_0 is the meta-learned (or fixed) init; the head's
own init values are replaced in every task. The prototypes stay differentiable (the query loss reaches the
backbone through the adapted weights *and* through the head built at theta_0), also under a first-order oracle,
which detaches inner gradients only; ``detach = True`` makes them constants [the choice of a PyTorch port that
the spec warns against; kept as an option]. Ways are those of the head (fixed-way episodes).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from innerloop.errors import ConfigError
from innerloop.params import Params


def output_layer(model: nn.Module, name: str = "") -> str:
    """The name of the output layer: ``name`` if given (an ``nn.Linear`` of ``model``), else the last one."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if name:
        if name not in linears:
            raise ConfigError(f"init.proto_head = {name!r} is not an nn.Linear of the model; its linear layers: "
                              f"{', '.join(linears) or 'none'}")
        return name
    if not linears:
        raise ConfigError("init.proto = true needs a model whose output layer is an nn.Linear (it sets its weight "
                          "and bias from the support prototypes)")
    return linears[-1]


def features(learner, params: Params, x: Tensor, head: str) -> Tensor:
    """phi(x): the input of module ``head`` when ``learner``'s model runs on ``x`` with ``params``."""
    module = getattr(learner._replica, "model", None) or learner.model
    seen: list[Tensor] = []
    handle = module.get_submodule(head).register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        learner.forward(params, x)
    finally:
        handle.remove()
    return seen[-1].flatten(1)


def prototypes(phi: Tensor, y: Tensor, ways: int) -> Tensor:
    """``[ways, d]`` class means of ``phi`` (one-hot matmul: exact under vmap; a class without examples gets 0)."""
    onehot = (y.unsqueeze(-1) == torch.arange(ways, device=y.device)).to(phi.dtype)  # [n, ways]
    return (onehot.T @ phi) / onehot.sum(0).clamp(min=1).unsqueeze(-1)


class ProtoHead(nn.Module):
    """``forward(learner, params, static, x, y) -> params`` with the output layer set from the prototypes (see the
    module docstring). Holds no meta-parameters."""

    def __init__(self, head: str, detach: bool = False):
        super().__init__()
        self.head, self.detach = head, detach

    def forward(self, learner, params: Params, static: Params, x: Tensor, y: Tensor) -> Params:
        w_name, b_name = f"{self.head}.weight", f"{self.head}.bias"
        full = {**static, **params}
        if w_name not in full or b_name not in full:
            raise ConfigError(f"init.proto: the output layer {self.head!r} needs a weight and a bias")
        ways = full[w_name].shape[0]
        phi = features(learner, full, x, self.head)
        c = prototypes(phi, y, ways)
        if self.detach:
            c = c.detach()
        out = dict(params)
        for name, value in ((w_name, 2 * c), (b_name, -(c * c).sum(-1))):
            if name in out:
                out[name] = value.to(full[name].dtype)
        return out
