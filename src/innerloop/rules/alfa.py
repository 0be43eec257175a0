"""ALFA: per-step, per-layer learning rate and weight decay generated from the learning state.

Implements the authors' code form (``baiksung/ALFA`` ``LSLRGradientDescentLearningRule``):

    tau_j   = [mean(theta_l) for l] ++ [mean(g_l) for l]           (2N, no normalisation)
    g_a, g_b = split(generator(tau_j))                              (N + N raw linear outputs)
    alpha_l = g_a[l] * alpha0[l, j]
    decay_l = g_b[l] * beta0[l, j]            (* beta_pp[l] elementwise with ALFA + random init)
    theta_l <- (1 - decay_l) * theta_l - alpha_l * g_l

alpha0 is initialised to ``lr`` (0.01), beta0 to ``weight_decay * lr`` (5e-6), or to 1 when the
per-parameter decay beta_pp (init ``weight_decay * lr``) is on (ALFA + random init, spec section 4).

``form = "robust"`` (issue 24) keeps the inputs, generator and post-multipliers but starts as the learned-rate
baseline (MAML++'s LSLR) and departs from it only as far as meta-training asks:

    g_a, g_b = split(generator(tau_j))                  (last generator layer zero-initialised: g = 0 at start)
    alpha_l = exp(log_alpha0[l, j]) * exp(log(B) * tanh(g_a[l]))   (multiplier in [1/B, B], 1 at start)
    decay_l = min(exp(log_beta0[l, j]) * exp(log(B) * tanh(g_b[l])), 1)

with ``bound`` B = 2 by default [INFERRED: chosen on meta-training curves of the hardest five-step sinusoid cell,
2x40 k = 5: B = 10 diverged at iteration ~1,000 (a few tasks' inner loops blew up at 10x rates), B = 2 trained
stably; no test tasks involved]; log_alpha0 starts at
log(lr) and log_beta0 at log(weight_decay * lr), so rates and decay stay positive and Adam's meta-steps change them
by a fraction of their size (the paper form's alpha0 moves by ~meta_lr per step: 10% of a 0.01 rate). The paper
form's raw linear outputs can start negative or huge, which is what blew up five-step meta-training.

``schedule`` says what happens at inner steps past the S it was meta-trained with (issue 24). ``"per_step"``
(the paper): post-multipliers indexed by step, steps past S reuse step S-1's. ``"state"``: one post-multiplier
per layer for every step (``alpha0[l]``, ``beta0[l]``; robust: their logs), so the rates vary across steps only through the
generator's learning-state input, and the rule is defined for any number of steps [INFERRED option].

Ablations (ALFA Tables 5-6) are options:

* ``inputs``: ``"both"`` (weights and gradients), ``"weights"``, ``"gradients"``.
* ``alpha`` / ``beta`` mode: ``"adaptive"`` (generator x post-multiplier), ``"fixed"`` (generator
  output replaced by 1: meta-learned but not generated), ``"off"`` (alpha: the constant ``lr``;
  beta: no weight decay).
* ``alpha_granularity`` / ``beta_granularity``: ``"step_layer"`` (default), ``"step"`` (one value per
  step shared by all layers) or ``"layer"`` (one value per layer shared by all steps; when
  adaptive, the generator is evaluated once at step 0 and its output reused) [INFERRED reading of
  Table 6].
"""

from __future__ import annotations

import math

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from innerloop.errors import ConfigError
from innerloop.params import Params, ordered_parameter_dict, safe_key
from innerloop.rules.base import Info, State, UpdateRule

MODES = ("adaptive", "fixed", "off")
GRANULARITIES = ("step_layer", "step", "layer")
FORMS = ("paper", "robust")
SCHEDULES = ("per_step", "state")
INPUTS = ("both", "weights", "gradients")


class ALFA(UpdateRule):
    """The ALFA update rule; see the module docstring for the equations."""

    def __init__(
        self,
        shapes: Mapping[str, torch.Size],
        steps: int,
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        generator_layers: int = 3,
        inputs: str = "both",
        alpha: str = "adaptive",
        beta: str = "adaptive",
        alpha_granularity: str = "step_layer",
        beta_granularity: str = "step_layer",
        per_param_decay: bool = False,
        detach_grad_input: bool = True,
        form: str = "robust",
        bound: float = 2.0,
        schedule: str = "per_step",
    ):
        super().__init__()
        if steps < 1:
            raise ConfigError("ALFA needs at least 1 inner step: set inner.steps >= 1")
        for what, value, allowed in (
            ("rule.inputs", inputs, INPUTS),
            ("rule.alpha", alpha, MODES),
            ("rule.beta", beta, MODES),
            ("rule.alpha_granularity", alpha_granularity, GRANULARITIES),
            ("rule.beta_granularity", beta_granularity, GRANULARITIES),
            ("rule.form", form, FORMS),
            ("rule.schedule", schedule, SCHEDULES),
        ):
            if value not in allowed:
                raise ConfigError(f"{what} = {value!r} is not one of {list(allowed)}")
        if generator_layers not in (2, 3):
            raise ConfigError(f"rule.generator_layers = {generator_layers} must be 2 or 3")
        if not bound > 1:
            raise ConfigError(f"rule.bound = {bound} must be > 1 (the robust form's multipliers stay in [1/bound, bound])")
        self.form, self.bound = form, float(bound)
        self.names = list(shapes)
        self.schedule = schedule
        self.steps = steps if schedule == "per_step" else None  # "state": defined for any number of steps
        self.lr = lr
        self.inputs = inputs
        self.alpha_mode, self.beta_mode = alpha, beta
        self.alpha_gran, self.beta_gran = alpha_granularity, beta_granularity
        self.per_param_decay = per_param_decay
        self.detach_grad_input = detach_grad_input
        n = len(self.names)

        def post(gran: str, value: float) -> nn.Parameter:
            if schedule == "state":
                shape = (1,) if gran == "step" else (n,)
            else:
                shape = {"step_layer": (n, steps + 1), "step": (steps + 1,), "layer": (n,)}[gran]
            return nn.Parameter(torch.full(shape, float(value)))

        robust = form == "robust"
        beta_start = 1.0 if per_param_decay else weight_decay * lr
        if robust and (lr <= 0 or (beta != "off" and beta_start <= 0)):
            raise ConfigError("rule.form = 'robust' keeps rates and decay positive (log space): use rule.lr > 0 and "
                              "rule.weight_decay > 0, or rule.beta = 'off' for no decay")
        # robust: post-multipliers live in log space (log_alpha0, log_beta0), so they stay positive and Adam's
        # meta-steps change them by a fraction of their size, not by an absolute amount
        if alpha != "off":
            if robust:
                self.log_alpha0 = post(alpha_granularity, math.log(lr))
            else:
                self.alpha0 = post(alpha_granularity, lr)
        if beta != "off":
            if robust:
                self.log_beta0 = post(beta_granularity, math.log(beta_start))
            else:
                self.beta0 = post(beta_granularity, beta_start)
            if per_param_decay:
                self.beta_pp = ordered_parameter_dict(
                    (safe_key(k), nn.Parameter(torch.full(tuple(s), weight_decay * lr))) for k, s in shapes.items()
                )
        self.out_alpha = (1 if alpha_granularity == "step" else n) if alpha == "adaptive" else 0
        self.out_beta = (1 if beta_granularity == "step" else n) if beta == "adaptive" else 0
        if self.out_alpha + self.out_beta:
            d_in = 2 * n if inputs == "both" else n
            width = 2 * n
            layers: list[nn.Module] = [nn.Linear(d_in, width), nn.ReLU()]
            if generator_layers == 3:
                layers += [nn.Linear(width, width), nn.ReLU()]
            layers.append(nn.Linear(width, self.out_alpha + self.out_beta))
            if form == "robust":
                nn.init.zeros_(layers[-1].weight)
                nn.init.zeros_(layers[-1].bias)
            self.generator = nn.Sequential(*layers)
        else:
            self.generator = None

    def learning_state(self, params: Params, grads: Params) -> Tensor:
        """tau = [mean(theta_l)]_l ++ [mean(g_l)]_l; the gradient part enters as a constant."""
        parts = []
        if self.inputs in ("both", "weights"):
            parts += [params[k].mean() for k in self.names]
        if self.inputs in ("both", "gradients"):
            parts += [(grads[k].detach() if self.detach_grad_input else grads[k]).mean() for k in self.names]
        return torch.stack(parts)

    def _post(self, p: Tensor, gran: str, layer: int, j: int) -> Tensor:
        """The post-multiplier entry for tensor ``layer`` at step ``j``."""
        if self.schedule == "state":
            return p[0] if gran == "step" else p[layer]
        if gran == "step_layer":
            return p[layer, j]
        return p[j] if gran == "step" else p[layer]

    def forward(self, params: Params, grads: Params, state: State, step: int) -> tuple[Params, State, Info]:
        j = self.step_index(step)
        gen_a = gen_b = None
        if self.generator is not None:
            # per-layer ("layer" granularity) outputs are generated at step 0 and reused afterwards
            keep_a, keep_b = self.alpha_gran == "layer", self.beta_gran == "layer"
            cached = state.get("generated") if step > 0 else None
            if cached is not None and (keep_a or not self.out_alpha) and (keep_b or not self.out_beta):
                out = cached
            else:
                out = self.generator(self.learning_state(params, grads))
                if cached is not None:
                    out = torch.cat([cached[: self.out_alpha] if keep_a else out[: self.out_alpha],
                                     cached[self.out_alpha:] if keep_b else out[self.out_alpha:]])
            if keep_a or keep_b:
                state = {**state, "generated": out}
            if self.form == "robust":
                out = torch.exp(torch.tanh(out) * torch.log(torch.as_tensor(self.bound, dtype=out.dtype)))
            gen_a, gen_b = out[: self.out_alpha], out[self.out_alpha:]
        new: Params = {}
        lrs, decays = [], []
        for i, k in enumerate(self.names):
            if self.alpha_mode == "off":
                lr = torch.as_tensor(self.lr, dtype=params[k].dtype, device=params[k].device)
            else:
                lr = (self._post(self.log_alpha0, self.alpha_gran, i, j).exp() if self.form == "robust"
                      else self._post(self.alpha0, self.alpha_gran, i, j))
                if gen_a is not None:
                    lr = lr * (gen_a[0] if self.out_alpha == 1 else gen_a[i])
            theta = params[k]
            if self.beta_mode == "off":
                decay_scalar = None
                shrunk = theta
            else:
                decay_scalar = (self._post(self.log_beta0, self.beta_gran, i, j).exp() if self.form == "robust"
                                else self._post(self.beta0, self.beta_gran, i, j))
                if gen_b is not None:
                    decay_scalar = decay_scalar * (gen_b[0] if self.out_beta == 1 else gen_b[i])
                if self.form == "robust":
                    decay_scalar = decay_scalar.clamp(max=1.0)
                decay = decay_scalar * self.beta_pp[safe_key(k)] if self.per_param_decay else decay_scalar
                shrunk = (1 - decay) * theta
            new[k] = shrunk - lr * grads[k]
            lrs.append(lr)
            decays.append(decay_scalar if decay_scalar is not None else torch.zeros_like(lr))
        return new, state, {"lr": torch.stack(lrs), "wd": torch.stack(decays)}
