"""Fine-tune your own model with a meta-learned update rule (e.g. a trained LFT fine-tuner).

    from innerloop.finetune import finetune, load_fine_tuner
    rule = load_fine_tuner("runs/lft")                       # any run directory with a trained rule
    report = finetune(model, x, y, rule, steps=100, oracle="zo")   # updates model's parameters in place

With ``oracle="zo"`` only loss values are used (q + 1 forward calls per step, no backward): the
model can be a black box. :func:`finetune_params` is the core: it needs nothing but a parameter
dict and a loss function of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from innerloop.engine.learner import LOSSES
from innerloop.errors import UserError
from innerloop.oracles import AutogradOracle, ZerothOrderOracle
from innerloop.params import Params
from innerloop.rules.base import UpdateRule


def load_fine_tuner(run_dir: str | Path) -> UpdateRule:
    """The trained update rule of a run directory (its meta-learned init is not used)."""
    from innerloop.train import load_run

    _, meta, _, _ = load_run(run_dir)
    rule = meta.rule
    rule.eval()
    for p in rule.parameters():
        p.requires_grad_(False)
    return rule


def make_oracle(oracle: str, q: int = 20, mu: float = 0.005):
    if oracle == "fo":
        return AutogradOracle("first")
    if oracle == "zo":
        return ZerothOrderOracle(q, mu)
    raise UserError(f"oracle {oracle!r} is not 'fo' (gradients) or 'zo' (loss values only)")


@torch.no_grad()
def finetune_params(
    params: Params, loss_fn: Callable[[Params], Tensor], rule: UpdateRule, steps: int, oracle="fo", seed: int = 0
) -> tuple[Params, dict]:
    """Run ``steps`` of ``rule`` on ``loss_fn`` from ``params``; returns the new params and a report
    ``{"losses": [loss before each step and after the last], "queries": loss evaluations used}``."""
    if steps < 0:
        raise UserError("--steps must be >= 0")
    if getattr(rule, "steps", None) is not None and hasattr(rule, "names") and set(rule.names) != set(params):
        raise UserError(
            "this fine-tuner has per-layer meta-parameters for another architecture; a coordinate-wise rule "
            "(rule.kind = 'lstm') fine-tunes any model"
        )
    oracle = make_oracle(oracle) if isinstance(oracle, str) else oracle
    params = {k: v.detach() for k, v in params.items()}
    state = rule.init_state(params)
    losses, queries = [], 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for j in range(steps):
            loss, grads, q = oracle(loss_fn, params)
            params, state, _ = rule(params, grads, state, j)
            losses.append(float(loss))
            queries += q
    losses.append(float(loss_fn(params)))
    queries += 1
    return params, {"losses": losses, "queries": queries}


def finetune(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rule: UpdateRule | str | Path,
    steps: int = 100,
    loss: str | Callable[[Tensor, Tensor], Tensor] = "mse",
    oracle: str = "fo",
    seed: int = 0,
) -> dict:
    """Fine-tune ``model`` on ``(x, y)`` in place with a learned rule; returns the loss report."""
    if not isinstance(rule, nn.Module):
        rule = load_fine_tuner(rule)
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise UserError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or pass a function")
        loss = LOSSES[loss]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: model.get_parameter(n) for n in names}
    loss_fn = lambda p: loss(functional_call(model, p, (x,)), y)
    new, report = finetune_params(params, loss_fn, rule, steps, oracle, seed)
    with torch.no_grad():
        for n in names:
            model.get_parameter(n).copy_(new[n])
    return report
