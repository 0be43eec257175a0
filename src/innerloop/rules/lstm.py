"""Coordinate-wise LSTM update rule (Andrychowicz et al. 2016; LFT; ZO-L2L).

One small LSTM is shared by every coordinate of every parameter tensor; each coordinate has its own
hidden and cell state. The parameters are flattened into one vector (dict order), so the same
meta-parameters step parameter dicts of any shape and size — an MLP in one task, a CNN in the next:

    x_i          = preprocess(g_i)                       (LogAndSign, or the raw gradient)
    h_i, c_i     = LSTM(x_i, (h_i, c_i))                 (per coordinate i, shared weights)
    u_i          = scale * head(h_i)
    theta_i     <- theta_i + u_i                         (additive update; max_update = 0, the papers' form)

With ``max_update = rho > 0`` each tensor's update is tied to its gradient's scale by a soft norm bound:

    delta_t      = u_t / sqrt(1 + (||u_t|| / (rho * ||g_t||))^2)      so ||delta_t|| < min(||u_t||, rho * ||g_t||)

which leaves small updates as they are, caps a tensor's step at that of SGD with rate ``rho``, and makes
every point where the (estimated) gradient vanishes a fixed point of the rule, so an LSTM run past the
horizon it was trained for cannot drift away from a minimum it has reached. With ``descent = True`` each
tensor's update also loses its component along the gradient when that points uphill,

    delta_t     <- delta_t - max(0, <delta_t, g_t>) / ||g_t||^2 * g_t          (<delta_t, g_t> <= 0)

so every step is a first-order descent direction (for the oracle's gradient) [DESIGN: issue 23].

``output = "rate"`` makes the head a per-coordinate learning rate instead of a step,

    theta_i     <- theta_i - scale * sigmoid(head(h_i)) * g_i                   (rates in (0, scale))

a learned diagonal preconditioner: no coordinate moves without a gradient, none moves uphill, and no rate
exceeds ``scale``, so the rule is SGD-stable wherever SGD at rate ``scale`` is [DESIGN: issue 23].

``output = "adam"`` makes the LSTM a per-coordinate modulator of Adam (Kingma & Ba 2015):

    m_i <- b1 m_i + (1 - b1) g_i,   v_i <- b2 v_i + (1 - b2) g_i^2,   a_i = m_hat_i / sqrt(v_hat_i + eps^2)
    x_i          = [preprocess(g_i), a_i]                                          (Adam's step is an input)
    theta_i     <- theta_i - exp(log_rate) * exp(log(r) * tanh(head(h_i))) * a_i     (factor in [1/r, r])

with ``m_hat, v_hat`` bias-corrected at step j + 1, a meta-learned base rate ``log_rate`` (initialised at
``log(scale)``) and ``r = adam_range``. Every step is bounded by ``r * exp(log_rate)`` per coordinate (about
that of Adam), and with ``head_init_scale = 0`` the untrained rule *is* Adam at rate ``scale``: meta-training
starts from the hand-designed optimizer and learns per-coordinate, per-step rate schedules from it. eps sits
inside the root so the rule stays twice differentiable where a gradient is exactly zero [DESIGN: issue 23].

Defaults follow ``deepmind/learning-to-learn`` (2 layers x 20 units, LogAndSign with k = 5) with
output scale 0.1 (the L2L paper's value; the code uses 0.01) [INFERRED for LFT]. The ZO-L2L variant
(1 layer x 10 units, no bias, raw input, head weights x 0.1 at init) is ``CoordinateLSTM.zo_l2l()``.
The cell is written from elementary ops so it runs under ``torch.func.vmap``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from innerloop.errors import ConfigError
from innerloop.params import Params
from innerloop.rules.adam import adam_moments
from innerloop.rules.base import Info, State, UpdateRule

PREPROCESS = ("log_sign", "none")
OUTPUTS = ("additive", "rate", "adam")


def log_and_sign(g: Tensor, k: float = 5.0) -> Tensor:
    """L2L ``LogAndSign``: ``[clamp(log(|g| + eps) / k, min=-1), clamp(g * e^k, -1, 1)]``."""
    eps = torch.finfo(g.dtype).eps
    log = torch.clamp(torch.log(g.abs() + eps) / k, min=-1.0)
    sign = torch.clamp(g * math.exp(k), -1.0, 1.0)
    return torch.stack([log, sign], dim=-1)


class CoordinateLSTM(UpdateRule):
    """The learned fine-tuner ``m_phi``; see the module docstring."""

    coordinatewise = True  # one small network per coordinate: cost grows with the parameter count

    steps = None  # no per-step meta-parameters: any number of steps

    def __init__(
        self,
        hidden: int = 20,
        layers: int = 2,
        preprocess: str = "log_sign",
        k: float = 5.0,
        scale: float = 0.1,
        bias: bool = True,
        head_init_scale: float = 1.0,
        max_update: float = 0.0,
        descent: bool = False,
        output: str = "additive",
        adam_range: float = 10.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        super().__init__()
        if preprocess not in PREPROCESS:
            raise ConfigError(f"rule.preprocess = {preprocess!r} is not one of {list(PREPROCESS)}")
        if hidden < 1 or layers < 1:
            raise ConfigError("rule.hidden and rule.layers must be >= 1")
        if output not in OUTPUTS:
            raise ConfigError(f"rule.output = {output!r} is not one of {list(OUTPUTS)}")
        if max_update < 0:
            raise ConfigError(f"rule.max_update = {max_update} must be >= 0 (0: unbounded additive updates)")
        self.hidden, self.layers, self.preprocess, self.k, self.scale = hidden, layers, preprocess, k, scale
        if output == "adam" and not adam_range >= 1:
            raise ConfigError(f"rule.adam_range = {adam_range} must be >= 1 (the LSTM scales Adam's rate by [1/r, r])")
        self.max_update, self.descent, self.output = max_update, descent, output
        self.adam_range, self.betas, self.eps = adam_range, betas, eps
        d_in = (2 if preprocess == "log_sign" else 1) + (output == "adam")
        self.ih = nn.ModuleList(nn.Linear(d_in if i == 0 else hidden, 4 * hidden, bias=bias) for i in range(layers))
        self.hh = nn.ModuleList(nn.Linear(hidden, 4 * hidden, bias=False) for _ in range(layers))
        self.head = nn.Linear(hidden, 1, bias=bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            if self.head.bias is not None and output == "adam":
                self.head.bias.mul_(head_init_scale)
        if output == "adam":
            self.log_rate = nn.Parameter(torch.tensor(math.log(scale)))

    @classmethod
    def zo_l2l(cls) -> "CoordinateLSTM":
        """ZO-L2L's optimizer: 1 x 10 LSTM, no bias, raw input, head weights scaled by 0.1, additive."""
        return cls(hidden=10, layers=1, preprocess="none", scale=1.0, bias=False, head_init_scale=0.1)

    def init_state(self, params: Params) -> State:
        n = sum(p.numel() for p in params.values())
        ref = next(iter(params.values()))
        zeros = ref.new_zeros(self.layers, n, self.hidden)
        state = {"h": zeros, "c": zeros.clone()}
        if self.output == "adam":
            state["m"], state["v"] = ref.new_zeros(n), ref.new_zeros(n)
        return state

    def forward(self, params: Params, grads: Params, state: State, step: int) -> tuple[Params, State, Info]:
        g = torch.cat([grads[k].reshape(-1) for k in params])
        x = log_and_sign(g, self.k) if self.preprocess == "log_sign" else g.unsqueeze(-1)
        moments = {}
        if self.output == "adam":
            a, moments = self._adam(g, state, step)
            x = torch.cat([x, a.unsqueeze(-1)], dim=-1)
        hs, cs = [], []
        for layer in range(self.layers):
            h, c = state["h"][layer], state["c"][layer]
            i, f, gg, o = (self.ih[layer](x) + self.hh[layer](h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
            x = h
        out = self.head(x).squeeze(-1)
        if self.output == "adam":
            delta = -torch.exp(self.log_rate + math.log(self.adam_range) * torch.tanh(out)) * a
        elif self.output == "rate":
            delta = -self.scale * torch.sigmoid(out) * g
        else:
            delta = out * self.scale
        new, offset, steps = {}, 0, []
        for k, p in params.items():
            n = p.numel()
            d = delta[offset : offset + n]
            g_k = grads[k].reshape(-1)
            if self.descent:
                d = downhill(d, g_k)
            if self.max_update > 0:
                d = bounded(d, g_k, self.max_update)
            steps.append(d)
            new[k] = p + d.view_as(p)
            offset += n
        rms = torch.cat(steps).pow(2).mean().sqrt()
        return new, {"h": torch.stack(hs), "c": torch.stack(cs), **moments}, {"update_rms": rms}

    def _adam(self, g: Tensor, state: State, step: int) -> tuple[Tensor, State]:
        """Adam's bias-corrected step ``m_hat / sqrt(v_hat + eps^2)`` and the new moments."""
        m_hat, v_hat, m, v = adam_moments(state["m"], state["v"], g, self.betas, step)
        return m_hat / torch.sqrt(v_hat + self.eps**2), {"m": m, "v": v}


def downhill(u: Tensor, g: Tensor) -> Tensor:
    """``u - max(0, <u, g>) / ||g||^2 * g``: ``u`` without its uphill component along ``g``."""
    tiny = torch.finfo(u.dtype).tiny
    return u - torch.relu((u * g).sum()) / (g.pow(2).sum() + tiny) * g


def bounded(u: Tensor, g: Tensor, rho: float) -> Tensor:
    """``u / sqrt(1 + (||u|| / (rho ||g||))^2)``: ``u`` softly capped at norm ``rho * ||g||`` (0 where g = 0)."""
    tiny = torch.finfo(u.dtype).tiny
    ratio = u.pow(2).sum() / (rho**2 * g.pow(2).sum() + tiny)
    return u * torch.rsqrt(1 + ratio)
