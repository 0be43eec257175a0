"""Checkpointed inner loop: store theta every ``c`` steps, recompute segments in the backward pass.

``torch.utils.checkpoint`` relies on saved-tensor hooks that ``torch.func`` transforms do not
support (pytorch/pytorch#122729), so this is an explicit ``autograd.Function``:

* forward: run the unroll without a graph, keeping ``(theta_j, state_j)`` at every segment start;
* backward: for each segment from last to first, recompute it with a graph (vmapped over tasks
  when batched) and pull the cotangent through it with ``torch.autograd.grad``, accumulating the
  gradients of the rule's and the static meta-parameters on the way.

With ``c = 1`` peak memory is T parameter copies plus one step's graph (flat in T for conv nets,
whose activations dwarf their parameters) for about one extra forward pass per step; with
``c ~ sqrt(T)``, about sqrt(T) copies and graphs. Only the final-step objective is supported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from innerloop.engine.unroll import InnerLoop, stack_infos
from innerloop.oracles.keyed import TaskKey
from innerloop.params import Params


@dataclass
class UnrollPlan:
    loop: InnerLoop
    names: list[str]
    static: Params
    meta: list[Tensor]
    xs: Tensor
    ys: Tensor
    steps: int
    every: int
    batched: bool
    infos: dict | None = None
    salt: int | None = None  # keyed random oracle: the batch's salt and the tasks' whole-batch indices
    index: Tensor | None = None

    def segment(self, params: Params, state: dict, start: int, stop: int):
        def one(p, s, idx, x, y):
            key = None if idx is None else TaskKey(idx, self.salt)
            p, s, infos, _ = self.loop.run(p, s, self.static, x, y, start, stop, key)
            return p, s, stack_infos(infos)

        if self.batched:
            in_dims = (0, 0, None if self.index is None else 0, 0, 0)
            return torch.vmap(one, in_dims=in_dims, randomness="different")(params, state, self.index, self.xs,
                                                                             self.ys)
        return one(params, state, self.index, self.xs, self.ys)


def _rng_state(params: Params) -> tuple:
    """(CPU RNG state, CUDA devices of ``params``, their RNG states): what a segment's random draws depend on."""
    devices = sorted({t.device.index or 0 for t in params.values() if t.device.type == "cuda"})
    return torch.get_rng_state(), devices, [torch.cuda.get_rng_state(d) for d in devices]


def _set_rng_state(rng: tuple) -> None:
    cpu, devices, cuda = rng
    torch.set_rng_state(cpu)
    for d, st in zip(devices, cuda):
        torch.cuda.set_rng_state(st, d)


class _CheckpointedUnroll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan: UnrollPlan, *tensors: Tensor):
        n_meta = len(plan.meta)
        params = dict(zip(plan.names, tensors[n_meta:]))
        if plan.batched:
            state = torch.vmap(plan.loop.rule.init_state)(params)
        else:
            state = plan.loop.rule.init_state(params)
        saved, infos = [], []
        bounds = list(range(0, plan.steps, plan.every)) + [plan.steps]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            # the RNG state too: a segment that draws (zeroth-order directions) redraws the same numbers in backward
            saved.append((start, stop, params, state, _rng_state(params)))
            params, state, info = plan.segment(params, state, start, stop)
            infos.append(info)
        plan.infos = {k: torch.cat([i[k] for i in infos], dim=1 if plan.batched else 0) for k in infos[0]} if infos and infos[0] else {}
        ctx.plan = plan
        ctx.saved = saved
        return tuple(params[n] for n in plan.names)

    @staticmethod
    def backward(ctx, *cotangents: Tensor):
        plan: UnrollPlan = ctx.plan
        meta_idx = [i for i, m in enumerate(plan.meta) if m.requires_grad]
        meta_req = [plan.meta[i] for i in meta_idx]
        meta_grads = [torch.zeros_like(m) for m in meta_req]
        cot_p = dict(zip(plan.names, cotangents))
        cot_s: dict[str, Tensor] = {}
        for start, stop, params, state, rng in reversed(ctx.saved):
            with torch.enable_grad(), torch.random.fork_rng(devices=rng[1]):
                _set_rng_state(rng)
                p_in = {n: t.detach().requires_grad_() for n, t in params.items()}
                s_in = {n: t.detach().requires_grad_() for n, t in state.items() if t.is_floating_point()}
                p_out, s_out, _ = plan.segment(p_in, {**state, **s_in}, start, stop)
                outs = [p_out[n] for n in plan.names] + [s_out[k] for k in cot_s if k in s_out]
                cots = [cot_p[n] for n in plan.names] + [cot_s[k] for k in cot_s if k in s_out]
                inputs = [p_in[n] for n in plan.names] + list(s_in.values()) + meta_req
                grads = torch.autograd.grad(outs, inputs, cots, allow_unused=True)
            n_p, n_s = len(plan.names), len(s_in)
            cot_p = {n: (g if g is not None else torch.zeros_like(p_in[n])) for n, g in zip(plan.names, grads[:n_p])}
            cot_s = {k: g for k, g in zip(s_in, grads[n_p : n_p + n_s]) if g is not None}
            for i, g in enumerate(grads[n_p + n_s :]):
                if g is not None:
                    meta_grads[i] = meta_grads[i] + g
        out: list[Tensor | None] = [None] * len(plan.meta)
        for i, g in zip(meta_idx, meta_grads):
            out[i] = g
        return (None, *out, *(cot_p[n] for n in plan.names))


def checkpointed_unroll(plan: UnrollPlan, theta0: Params) -> Params:
    """theta_S from theta_0 (batched along dim 0 when ``plan.batched``), memory-checkpointed."""
    outs = _CheckpointedUnroll.apply(plan, *plan.meta, *(theta0[n] for n in plan.names))
    return dict(zip(plan.names, outs))
