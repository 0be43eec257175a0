"""Transferable ALFA: one generator shared by every tensor, so the rule fits any architecture (issue 24).

The paper's ALFA feeds all layers' means into one generator with one output per layer, so its meta-parameters
belong to one architecture. Here the generator sees one tensor at a time, through statistics that exist for any
tensor, and emits that tensor's learning rate and weight decay:

    f_l   = [mean(theta_l), log10 rms(theta_l), mean(g_l), log10 rms(g_l),        (the learning state, per tensor)
             log10 fan_in_l, [bias, matrix, conv]_l, log10(1 + j)]               (what the tensor is; the step)
    o_l   = generator(f_l)                       (2 outputs; last layer zero-initialised: o = 0 at start)
    alpha_l = exp(log_lr) * B ** tanh(o_l[0])
    decay_l = min(exp(log_wd) * B ** tanh(o_l[1]), 1)
    theta_l <- (1 - decay_l) * theta_l - alpha_l * g_l

With ``relative = True`` the generator's outputs are centred over the model's tensors before the bound,
``o_l <- o_l - mean_l' o_l'`` (each of the two outputs): the generator then only shares the rate and decay out between
tensors, and ``log_lr`` / ``log_wd`` alone set their overall scale. Without it the two overlap, and meta-training can
drive every tensor's multiplier to the bound together: the 4-CONV Omniglot row (rule.relative = false) ended with the
multiplier at exactly 1/B on every tensor, step and task, a learned scalar rate (results/alfa-transfer/results.md).
[DESIGN: issue 24, relative = true is the option that removes that degenerate direction.]

``log_lr`` starts at log(lr), ``log_wd`` at log(weight_decay * lr): the rule starts as SGD at ``lr`` with a tiny
decay, and every meta-parameter is architecture-free, so one trained rule adapts a 4-CONV, an MLP or a ResNet,
serves incongruous meta-batches, and can be handed to ``innerloop finetune``. The step enters as log10(1 + j),
defined for any number of steps. fan_in is the product of a tensor's dimensions after the first (1 for a bias).
Feature choice, width and bound B [INFERRED: the issue names the inputs, not the form].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from innerloop.errors import ConfigError
from innerloop.params import Params
from innerloop.rules.base import Info, State, UpdateRule

FEATURES = 9
EPS = 1e-12


def tensor_features(theta: Tensor, grad: Tensor, step: int) -> Tensor:
    """The 9 per-tensor inputs ``f_l`` (see the module docstring)."""
    fan_in = math.prod(theta.shape[1:]) if theta.ndim > 1 else 1
    kind = [float(theta.ndim <= 1), float(theta.ndim == 2), float(theta.ndim > 2)]
    stats = torch.stack([
        theta.mean(), torch.log10(theta.pow(2).mean().add(EPS).sqrt()),
        grad.mean(), torch.log10(grad.pow(2).mean().add(EPS).sqrt()),
    ])
    static = torch.tensor([math.log10(fan_in), *kind, math.log10(1 + step)], dtype=theta.dtype, device=theta.device)
    return torch.cat([stats, static])


class SharedALFA(UpdateRule):
    """ALFA with one generator for every tensor; see the module docstring for the equations."""

    steps = None  # defined for any number of steps

    def __init__(self, lr: float = 0.01, weight_decay: float = 5e-4, hidden: int = 32, bound: float = 2.0,
                 detach_grad_input: bool = True, relative: bool = False):
        super().__init__()
        if lr <= 0 or weight_decay <= 0:
            raise ConfigError("rule.kind = 'alfa_shared' keeps its rate and decay positive (log space): use rule.lr > 0 "
                              "and rule.weight_decay > 0")
        if not bound > 1:
            raise ConfigError(f"rule.bound = {bound} must be > 1 (the generated multipliers stay in [1/bound, bound])")
        if hidden < 1:
            raise ConfigError(f"rule.hidden = {hidden} must be >= 1")
        self.bound, self.detach_grad_input, self.lr = float(bound), detach_grad_input, float(lr)
        self.relative = bool(relative)
        self.log_lr = nn.Parameter(torch.tensor(math.log(lr)))
        self.log_wd = nn.Parameter(torch.tensor(math.log(weight_decay * lr)))
        head = nn.Linear(hidden, 2)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.generator = nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), head)

    def with_base_lr(self, lr: float) -> "SharedALFA":
        """A copy anchored at base rate ``lr`` instead of the ``rule.lr`` it was built with: ``log_lr`` and ``log_wd``
        shift by log(lr / rule.lr), so everything meta-training learned (the generator's multipliers, the change of
        the base rate) is kept relative to the new base. For a model whose loss scale calls for another rate than
        the source task's (a sinusoid MLP at 0.01, the rule trained on Omniglot at 0.4)."""
        import copy

        if not lr > 0:
            raise ConfigError(f"base rate {lr} must be > 0")
        new = copy.deepcopy(self)
        shift = math.log(lr / self.lr)
        with torch.no_grad():
            new.log_lr.add_(shift)
            new.log_wd.add_(shift)
        new.lr = float(lr)
        return new

    def forward(self, params: Params, grads: Params, state: State, step: int) -> tuple[Params, State, Info]:
        names = list(params)
        feats = torch.stack([
            tensor_features(params[k], grads[k].detach() if self.detach_grad_input else grads[k], step) for k in names
        ])
        raw = self.generator(feats)  # [tensors, 2], 0 at start
        if self.relative:  # shares out between tensors only: the common mode belongs to log_lr / log_wd
            raw = raw - raw.mean(0, keepdim=True)
        out = torch.exp(torch.tanh(raw) * math.log(self.bound))
        lrs = self.log_lr.exp() * out[:, 0]
        decays = (self.log_wd.exp() * out[:, 1]).clamp(max=1.0)
        new = {k: (1 - decays[i]) * params[k] - lrs[i] * grads[k] for i, k in enumerate(names)}
        return new, state, {"lr": lrs, "wd": decays}
