"""Hand-written second-order MAML in plain PyTorch / torch.func: the baselines innerloop's engine is timed against.

Written independently of innerloop's engine (only the workloads' data and initial weights are shared):

* ``hand_loop``: per task, ``torch.autograd.grad(create_graph=True)`` for each inner step, one ``.backward()``
  per task (the fastest plain loop measured on these machines: the established libraries run at its speed);
* ``hand_vmap``: ``torch.func.vmap`` over tasks with ``torch.func.grad`` inside, one ``.backward()``.

The networks are the same ``nn.Module``s, called with ``torch.func.functional_call`` as a user of
``torch.func`` would: the MLP 1-40-40-1 (ReLU) and the 4-conv backbone (conv3x3 -> batch norm with batch
statistics -> ReLU -> max-pool 2, then a linear classifier). Batch norm is PyTorch's fused kernel in the loop
(``nn.BatchNorm2d(track_running_stats=False)``, exact there) and elementary ops under vmap (the fused kernel's
second-order meta-gradient is wrong under vmap, functorch#534). Norm affine parameters are meta-learned, not
adapted, as in innerloop.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]


def functional(model: nn.Module) -> Callable[[Params, Tensor], Tensor]:
    return lambda p, x: torch.func.functional_call(model, p, (x,))


def mse(out: Tensor, y: Tensor) -> Tensor:
    return (out - y).pow(2).mean()


def hand_loop(forward, loss, theta: Params, inner: list[str], batch, steps: int, lr: float) -> Tensor:
    """Accumulates d mean_i L_query(theta_S^i) / d theta into ``.grad``; returns the mean meta-loss."""
    xs, ys, xq, yq = batch
    n, total = xs.shape[0], 0.0
    for i in range(n):
        fast = {k: theta[k] for k in inner}
        for _ in range(steps):
            l = loss(forward({**theta, **fast}, xs[i]), ys[i])
            g = torch.autograd.grad(l, list(fast.values()), create_graph=True)
            fast = {k: v - lr * gk for (k, v), gk in zip(fast.items(), g)}
        q = loss(forward({**theta, **fast}, xq[i]), yq[i]) / n
        q.backward()
        total += float(q.detach())
    return torch.tensor(total)


def hand_vmap(forward, loss, theta: Params, inner: list[str], batch, steps: int, lr: float) -> Tensor:
    outer = {k: v for k, v in theta.items() if k not in inner}

    def task(fast, xs, ys, xq, yq):
        for _ in range(steps):
            g = torch.func.grad(lambda f: loss(forward({**outer, **f}, xs), ys))(fast)
            fast = {k: fast[k] - lr * g[k] for k in fast}
        return loss(forward({**outer, **fast}, xq), yq)

    q = torch.vmap(task, in_dims=(None, 0, 0, 0, 0))({k: theta[k] for k in inner}, *batch).mean()
    q.backward()
    return q.detach()
