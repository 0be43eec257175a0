"""A learned inner loss (MeTAL, Baik et al. ICCV 2021): the loss the inner loop descends is meta-learned.

At inner step j the rule no longer sees the gradient of the task loss alone but of

    L_j(theta) = L(D_s; theta) + l^s_j(tau^s) + l^q_j(tau^q)                                   (MeTAL eq. 3-5)

* the support task state, per support example i (``m_l`` the mean of inner tensor l, N tensors):
      s        = [L(D_s; theta), m_1 .. m_N]                                      (N + 1)
      tau^s_i  = norm([s, f(x_i; theta), y_i])             (y one-hot for classification; N + 1 + 2C)
* the query task state (transductive: unlabelled query inputs only), per query example:
      tau^q_i  = norm([m_1 .. m_N, f(x'_i; theta), sum_c p_c log p_c])     (the last term: classification)
  ``norm(v) = (v - mean(v)) / (std(v) + 1e-12)`` over all entries of the matrix (as the authors' code);
* each loss network is Linear(D, D) -> ReLU -> Linear(D, 1), averaged over examples;
* its four tensors are modulated per task by an adapter (Linear(D_a, D_a) -> ReLU -> Linear(D_a, 8)) fed the
  normalised state (support: norm(s); query: the example mean of tau^q):
      W' = (1 + a_k * m_k) * W + b_k * o_k,     (m, o) = adapter output, a_k, b_k meta-learned, zero at start
  so the adapters are gated from zero: at the start every task uses the shared loss network.

Every network exists once per inner step (``steps``); a step past them reuses the last one [INFERRED: the
authors train and test with the same number of steps]. ``init = "zero"`` (default) zero-initialises each loss
network's last layer, so meta-training starts from the plain task loss exactly [INFERRED: the issue asks for
it]; ``init = "random"`` is the authors' PyTorch default initialisation. The learned terms reach the meta-gradient
only through the inner gradients: with a first-order oracle they get none (MeTAL is second order).
For regression (``classification=False``) the targets enter as they are and the query state has no entropy
term [INFERRED: MeTAL is defined for classification].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from innerloop.errors import ConfigError
from innerloop.params import Params

EPS = 1e-12


def normalise(v: Tensor) -> Tensor:
    """``(v - mean(v)) / (std(v) + 1e-12)`` over every entry (the authors' task-state normalisation)."""
    return (v - v.mean()) / (v.std() + EPS)


class _StepLoss(nn.Module):
    """One step's loss network Linear(D, D) -> ReLU -> Linear(D, 1) and its adapter, applied functionally."""

    def __init__(self, dim: int, adapter_dim: int, init: str):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.empty(dim, dim)), nn.Parameter(torch.empty(dim))
        self.w2, self.b2 = nn.Parameter(torch.empty(1, dim)), nn.Parameter(torch.empty(1))
        for w, b in ((self.w1, self.b1), (self.w2, self.b2)):  # nn.Linear's default initialisation
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            nn.init.uniform_(b, -1 / math.sqrt(dim), 1 / math.sqrt(dim))
        if init == "zero":
            nn.init.zeros_(self.w2)
            nn.init.zeros_(self.b2)
        self.adapter = nn.Sequential(nn.Linear(adapter_dim, adapter_dim), nn.ReLU(), nn.Linear(adapter_dim, 8))
        self.gate_scale = nn.Parameter(torch.zeros(4))  # a_k: zero, so the adapter is off at the start
        self.gate_shift = nn.Parameter(torch.zeros(4))  # b_k

    def forward(self, state: Tensor, adapter_input: Tensor) -> Tensor:
        """Mean over examples of the adapted loss network on ``state`` [examples, D]."""
        m, o = self.adapter(adapter_input).chunk(2, -1)
        w1, b1, w2, b2 = ((1 + self.gate_scale[k] * m[k]) * t + self.gate_shift[k] * o[k]
                          for k, t in enumerate((self.w1, self.b1, self.w2, self.b2)))
        return F.linear(torch.relu(F.linear(state, w1, b1)), w2, b2).mean()


class LearnedInnerLoss(nn.Module):
    """MeTAL's learned inner loss (see the module docstring): ``extra(step, task_loss, params, out_s, y_s, out_q)``
    is the term added to the task loss at inner step ``step``."""

    def __init__(self, n_tensors: int, out_dim: int, steps: int, classification: bool = True,
                 transductive: bool = True, init: str = "zero"):
        super().__init__()
        if init not in ("zero", "random"):
            raise ConfigError(f"objective.metal_init = {init!r}: use 'zero' (start from the plain loss) or 'random'")
        if steps < 1 or n_tensors < 1 or out_dim < 1:
            raise ConfigError(f"a learned inner loss needs steps, tensors and outputs >= 1 (got {steps}, {n_tensors}, "
                              f"{out_dim})")
        self.out_dim, self.classification, self.transductive = out_dim, classification, transductive
        d_s = n_tensors + 1 + 2 * out_dim
        self.support = nn.ModuleList(_StepLoss(d_s, n_tensors + 1, init) for _ in range(steps))
        d_q = n_tensors + out_dim + int(classification)
        self.query = nn.ModuleList(_StepLoss(d_q, d_q, init) for _ in range(steps)) if transductive else None

    @property
    def steps(self) -> int:
        return len(self.support)

    def targets(self, y: Tensor, like: Tensor) -> Tensor:
        if self.classification:  # one-hot without F.one_hot (safe under vmap)
            return (y.unsqueeze(-1) == torch.arange(self.out_dim, device=y.device)).to(like.dtype)
        return y.reshape(y.shape[0], -1).to(like.dtype)

    def forward(self, step: int, task_loss: Tensor, params: Params, out_s: Tensor, y_s: Tensor,
                out_q: Tensor | None = None) -> Tensor:
        j = min(step, self.steps - 1)
        means = torch.stack([p.mean() for p in params.values()]).to(out_s.dtype)
        s = torch.cat([task_loss.reshape(1).to(out_s.dtype), means])
        rows = out_s.shape[0]
        tau_s = normalise(torch.cat([s.expand(rows, -1), out_s.reshape(rows, -1), self.targets(y_s, out_s)], -1))
        extra = self.support[j](tau_s, normalise(s))
        if self.query is not None and out_q is not None:
            rq = out_q.shape[0]
            cols = [means.expand(rq, -1), out_q.reshape(rq, -1)]
            if self.classification:
                logp = out_q.log_softmax(-1)
                cols.append((logp.exp() * logp).sum(-1, keepdim=True))
            tau_q = normalise(torch.cat(cols, -1))
            extra = extra + self.query[j](tau_q, tau_q.mean(0))
        return extra
