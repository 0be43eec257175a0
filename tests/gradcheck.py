"""Central finite differences of a scalar function of parameters along random directions (float64)."""

from __future__ import annotations

from typing import Callable

import torch


def directional_checks(params: list[torch.Tensor], loss: Callable[[], torch.Tensor], grads: list[torch.Tensor],
                       directions: int = 3, seed: int = 7, eps: float = 1e-6) -> list[tuple[float, float]]:
    """``[(grad . v, (L(p + eps v) - L(p - eps v)) / 2 eps)]`` for random directions ``v``; restores ``params``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(directions):
        v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(eps * d)
            up = float(loss())
            for p, d in zip(params, v):
                p.sub_(2 * eps * d)
            down = float(loss())
            for p, d in zip(params, v):
                p.add_(eps * d)
        out.append((float(sum((g * d).sum() for g, d in zip(grads, v))), (up - down) / (2 * eps)))
    return out


def tanh_mlp(theta: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The tests' ``MLP(1, [h, h], 1, "tanh")`` written out by hand (``net.0``, ``net.2``, ``net.4``)."""
    h = x
    for li, lin in enumerate([0, 2, 4]):
        h = h @ theta[f"net.{lin}.weight"].T + theta[f"net.{lin}.bias"]
        if li < 2:
            h = torch.tanh(h)
    return h


def class_batch(n_tasks: int = 2, shots: int = 2, query: int = 3, seed: int = 1, ways: int = 3,
                features: int = 4) -> tuple[torch.Tensor, ...]:
    """A float64 classification meta-batch ``(xs, ys, xq, yq)`` of random inputs, labels class by class."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n_tasks, ways * shots, features, generator=g, dtype=torch.float64)
    xq = torch.randn(n_tasks, ways * query, features, generator=g, dtype=torch.float64)
    ys = torch.arange(ways).repeat_interleave(shots).repeat(n_tasks, 1)
    yq = torch.arange(ways).repeat_interleave(query).repeat(n_tasks, 1)
    return xs, ys, xq, yq


def meta_grads(meta, batch) -> list[torch.Tensor]:
    """The meta-gradient ``meta.meta_backward(batch)`` leaves on every meta-parameter (zeros where none)."""
    meta.zero_grad(set_to_none=True)
    meta.meta_backward(batch)
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in meta.parameters()]


def meta_value(meta, batch) -> torch.Tensor:
    """The mean meta-loss of ``batch`` (stacked tensors or a list of per-task tuples), task by task through the
    task init (Proto head, L2F) and ``meta.loop.meta_loss``: what finite differences perturb."""
    theta0, static = meta.start()
    w = meta.objective.step_weights(meta.steps, 0)
    tasks = batch if isinstance(batch, list) else [tuple(t[i] for t in batch) for i in range(batch[0].shape[0])]
    total = []
    for xs, ys, xq, yq in tasks:
        p = meta._task_init(meta.loop, dict(theta0), static, xs, ys)
        total.append(meta.loop.meta_loss(p, None, static, xs, ys, xq, yq, w)[0])
    return torch.stack(total).mean()


def tanh_head_sgd_query_loss(th: dict[str, torch.Tensor], lr: float, steps: int, order: str, xs, ys, xq,
                             yq) -> torch.Tensor:
    """The query cross-entropy after ``steps`` SGD steps at ``lr`` of ``MLP(d, [h], C, "tanh")`` written out by hand
    (``net.0`` tanh features, ``net.2`` head) from ``th``; ``order = "first"`` detaches the inner gradients. Each
    step takes partial derivatives (a head built from ``net.0`` is a tensor of its own; a detached one a leaf)."""
    def logits(p, x):
        return torch.tanh(x @ p["net.0.weight"].T + p["net.0.bias"]) @ p["net.2.weight"].T + p["net.2.bias"]

    for _ in range(steps):
        th = {n: t.view_as(t) if t.requires_grad else t.detach().requires_grad_() for n, t in th.items()}
        names = list(th)
        g = torch.autograd.grad(torch.nn.functional.cross_entropy(logits(th, xs), ys), [th[n] for n in names],
                                create_graph=order == "second")
        th = {n: th[n] - lr * (gi if order == "second" else gi.detach()) for n, gi in zip(names, g)}
    return torch.nn.functional.cross_entropy(logits(th, xq), yq)
