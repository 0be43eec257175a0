"""Zeroth-order gradient estimate from loss values only (LFT eq. 5; ZO-L2L).

    g_hat = (1/q) * sum_i [(f(theta + mu * u_i) - f(theta)) / mu] * u_i

with ``u_i ~ N(0, I)`` (default), uniform on the unit sphere (then multiplied by the dimension d,
the unbiased scaling for sphere directions), or ``orthogonal``: q mutually orthogonal directions of norm
sqrt(d) spanning a uniformly random q-dimensional subspace (QR of a Gaussian draw; q <= d), so that
E[u u^T] = I as for Gaussian directions but no two directions measure the same component twice
(Choromanski et al. 2018, structured evolution strategies). The q perturbed losses are one batched call
(``torch.func.vmap`` over the directions), not q Python iterations. ``q + 1`` loss queries per call.

``antithetic=True`` uses central differences on the same directions,

    g_hat = (1/q) * sum_i [(f(theta + mu * u_i) - f(theta - mu * u_i)) / (2 mu)] * u_i,

whose bias is O(mu^2) instead of O(mu) and whose variance loses the part odd in u (for a quadratic f
the estimate is exactly u u^T g averaged); ``2q + 1`` queries per call (f(theta) is still queried: it
is the loss the rule and the report see). Compare estimators at equal query counts: antithetic q = 10
costs what forward q = 20 does.

During meta-training the estimate stays a differentiable function of theta (through the loss
values), so the meta-gradient needs only first-order derivatives of the loss (LFT Statement 1);
at test time no autograd graph of the loss is built at all. ``detach=True`` treats the estimate as
a constant in the meta-gradient (the zeroth-order analogue of L2L's detached gradient input,
``second_derivatives=False``): the q + 1 queries then build no graph during meta-training either,
so the meta-backward skips them (measured on the LeNet-5 UAP tasks: ``benchmarks/zeroth_order.py``)
[INFERRED option; off by default].

``noise="keyed"`` (default) draws the directions of task ``j`` at step ``c`` from a generator keyed by
``(batch salt, c, j)`` (:mod:`innerloop.oracles.keyed`): the same numbers however the batch is chunked,
threaded or split over processes. ``noise="stream"`` draws them from the global generator in call order
(innerloop < 0.13; a batch's numbers then depend on its chunking, and it cannot be sharded or threaded).
Called without a key (plain fine-tuning), both use the global generator.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor

from innerloop.errors import ConfigError
from innerloop.oracles.keyed import TaskKey
from innerloop.params import Params

DIRECTIONS = ("gaussian", "sphere", "orthogonal")
NOISE = ("keyed", "stream")


def flatten(params: Params) -> Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten(vec: Tensor, like: Params) -> Params:
    """Inverse of :func:`flatten`; ``vec`` may carry leading batch dimensions."""
    out, offset = {}, 0
    lead = vec.shape[:-1]
    for k, p in like.items():
        n = p.numel()
        out[k] = vec[..., offset : offset + n].reshape(*lead, *p.shape)
        offset += n
    return out


class ZerothOrderOracle:
    """Random-direction finite-difference gradient estimator; counts ``q + 1`` queries per call
    (``2q + 1`` antithetic)."""

    def __init__(self, q: int = 20, mu: float = 0.005, directions: str = "gaussian", detach: bool = False,
                 noise: str = "keyed", antithetic: bool = False):
        if q < 1:
            raise ConfigError(f"oracle.q = {q} must be >= 1")
        if not mu > 0:
            raise ConfigError(f"oracle.mu = {mu} must be > 0")
        if directions not in DIRECTIONS:
            raise ConfigError(f"oracle.directions = {directions!r} is not one of {list(DIRECTIONS)}")
        if noise not in NOISE:
            raise ConfigError(f"oracle.noise = {noise!r} is not one of {list(NOISE)}")
        self.q, self.mu, self.directions, self.detach, self.noise = q, mu, directions, detach, noise
        self.antithetic = bool(antithetic)

    @property
    def queries(self) -> int:
        """Loss queries per estimate: f(theta) and one (two if antithetic) per direction."""
        return (2 if self.antithetic else 1) * self.q + 1

    draws = True

    @property
    def keyed(self) -> bool:
        """Whether the directions follow the task keys (else the global generator's stream)."""
        return self.noise == "keyed"

    def __call__(self, loss_fn: Callable[[Params], Tensor], params: Params,
                 key: TaskKey | None = None) -> tuple[Tensor, Params, int]:
        # detach: no_grad records nothing, so the estimate and f(theta) leave without a graph
        with torch.no_grad() if self.detach else contextlib.nullcontext():
            return self._estimate(loss_fn, params, key if self.keyed else None)

    def _estimate(self, loss_fn: Callable[[Params], Tensor], params: Params,
                  key: TaskKey | None) -> tuple[Tensor, Params, int]:
        theta = flatten(params)
        d = theta.numel()
        if key is None:
            u = torch.randn(self.q, d, dtype=theta.dtype, device=theta.device)
        else:
            u = key.normal((self.q, d), theta.dtype, theta.device)
        if self.directions == "sphere":
            u = u / u.norm(dim=-1, keepdim=True)
        elif self.directions == "orthogonal":
            if self.q > d:
                raise ConfigError(f"oracle.q = {self.q} orthogonal directions do not fit {d} parameters: "
                                  f"use q <= {d} or oracle.directions = \"gaussian\"")
            u = torch.linalg.qr(u.transpose(-1, -2)).Q.transpose(-1, -2) * d ** 0.5
        f0 = loss_fn(params)
        if self.antithetic:
            fq = torch.vmap(loss_fn)(unflatten(torch.cat([theta + self.mu * u, theta - self.mu * u]), params))
            diff = (fq[: self.q] - fq[self.q :]) / (2 * self.mu)
        else:
            diff = (torch.vmap(loss_fn)(unflatten(theta + self.mu * u, params)) - f0) / self.mu
        g = (diff.unsqueeze(-1) * u).mean(0)
        if self.directions == "sphere":
            g = g * d
        return f0, unflatten(g, params), self.queries
