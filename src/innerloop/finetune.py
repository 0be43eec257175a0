"""Fine-tune your own model with a meta-learned update rule (e.g. a trained LFT fine-tuner).

    from innerloop.finetune import finetune, load_fine_tuner
    rule = load_fine_tuner("runs/lft")                       # any run directory with a trained rule
    report = finetune(model, x, y, rule, steps=100, oracle="zo")   # updates model's parameters in place

With ``oracle="zo"`` only loss values are used (q + 1 forward calls per step, no backward): the
model can be a black box. :func:`finetune_params` is the core: it needs nothing but a parameter
dict and a loss function of it.

Bad input is refused with a one-line :class:`UserError` before any work: with the named losses the model's
outputs and ``y`` must match exactly (``mse``: same shape, no broadcasting; ``cross_entropy``: scores
``[N, C]`` and integer classes ``y`` of shape ``[N]`` in ``[0, C)``), and ``x``/``y`` must be finite. A
fine-tuning run that reaches a non-finite loss or weights stops with :class:`DivergenceError` and leaves
the model unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from innerloop.engine.learner import LOSSES
from innerloop.errors import DivergenceError, UserError
from innerloop.oracles import AutogradOracle, ZerothOrderOracle
from innerloop.params import Params
from innerloop.rules.base import UpdateRule

#: more steps than anyone means: a typo (an extra zero or two), refused rather than run for days
MAX_STEPS = 10_000_000
CLASS_LOSSES = ("cross_entropy", "cw")


def shape_str(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def first_line(e: BaseException, limit: int = 160) -> str:
    """``"TypeName: first line of the message"``, for a one-line error that quotes an exception."""
    text = str(e).strip()
    line = text.splitlines()[0].strip() if text else ""
    return f"{type(e).__name__}: {line[:limit]}" if line else type(e).__name__


def load_fine_tuner(run_dir: str | Path) -> UpdateRule:
    """The trained update rule of a run directory (its meta-learned init is not used), or of a fine-tuner shipped
    with the package by name (``"default"``: :mod:`innerloop.pretrained`)."""
    from innerloop import pretrained
    from innerloop.loading import load

    name = str(run_dir)
    if not Path(name).exists() and "/" not in name and "\\" not in name:
        return frozen(pretrained.load_shipped(name))
    return frozen(load(run_dir).rule)  # no data is read


def frozen(rule: UpdateRule) -> UpdateRule:
    """``rule`` in eval mode with its meta-parameters out of autograd (fine-tuning does not train them)."""
    rule.eval()
    for p in rule.parameters():
        p.requires_grad_(False)
    return rule


def make_oracle(oracle: str, q: int = 20, mu: float = 0.005, directions: str = "gaussian", antithetic: bool = False):
    """``"fo"``: exact gradients; ``"zo"``: the zeroth-order estimate with q directions (``q + 1`` loss queries per
    step, ``2q + 1`` antithetic)."""
    if oracle == "fo":
        return AutogradOracle("first")
    if oracle == "zo":
        return ZerothOrderOracle(q, mu, directions, antithetic=antithetic)
    raise UserError(f"oracle {oracle!r} is not 'fo' (gradients) or 'zo' (loss values only)")


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise UserError(f"steps = {steps!r} must be a whole number")
    if not 0 <= steps <= MAX_STEPS:
        raise UserError(f"steps = {steps} must lie in [0, {MAX_STEPS:,}]")
    return steps


def check_rule_fits(rule: UpdateRule, names) -> None:
    if getattr(rule, "steps", None) is not None and hasattr(rule, "names") and set(rule.names) != set(names):
        theirs, yours = ", ".join(list(rule.names)[:3]), ", ".join(list(names)[:3])
        raise UserError(
            f"this fine-tuner ({type(rule).__name__}) has per-layer meta-parameters for another architecture (its "
            f"layers: {theirs}, ...; yours: {yours}, ...); a coordinate-wise rule (rule.kind = 'lstm') fine-tunes any model"
        )


def check_finite(name: str, t: Tensor) -> None:
    """One-line error naming the tensor when a floating ``t`` holds NaN or infinity."""
    if t.is_floating_point() or t.is_complex():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise UserError(f"{name} holds {bad} non-finite value{'s' if bad > 1 else ''} (NaN or infinity) among "
                            f"{t.numel()}: remove or repair those examples")


def check_examples(x, y, loss: str | None) -> None:
    """Refuse data that cannot be fine-tuned on; ``loss``: the named loss (``None``: a custom function)."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise UserError(f"{name} is a {type(t).__name__}, not a tensor: pass torch.tensor(...) or torch.from_numpy(...)")
    if not x.is_floating_point():
        raise UserError(f"x has dtype {x.dtype}; the model needs real floating-point inputs: pass x.float()")
    if x.ndim == 0:
        raise UserError("x has shape []: its first dimension must run over the examples, e.g. [N, features]")
    if x.shape[0] == 0:
        raise UserError(f"x has shape {shape_str(x)}: no examples to fine-tune on (at least one is needed)")
    check_finite("x", x)
    if loss is not None:
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise UserError(f"x of shape {shape_str(x)} and y of shape {shape_str(y)} hold different numbers of examples "
                            "(first dimension): give one y per example")
        if loss in CLASS_LOSSES:
            if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
                raise UserError(f"y has dtype {y.dtype}; {loss} needs integer class labels: pass y.long()")
        elif not y.is_floating_point():
            raise UserError(f"y has dtype {y.dtype}; {loss} needs real floating-point targets: pass y.float()")
    check_finite("y", y)


def check_outputs(out, y: Tensor, loss: str) -> None:
    """The model's outputs on x must fit y exactly for the named ``loss`` (no silent broadcasting)."""
    if not isinstance(out, Tensor):
        raise UserError(f"the model returns a {type(out).__name__}, not a tensor: fine-tuning needs forward(x) to return "
                        "the predictions as one tensor")
    if not out.is_floating_point():
        raise UserError(f"the model returns dtype {out.dtype}; fine-tuning needs floating-point predictions")
    o, t = shape_str(out), shape_str(y)
    if loss in CLASS_LOSSES:
        if out.ndim < 2 or out.shape[:-1] != y.shape:
            hint = " (y.squeeze(-1))" if y.ndim == out.ndim and y.shape[-1] == 1 else ""
            raise UserError(f"the model's outputs have shape {o} but y has shape {t}: {loss} needs class scores [N, C] "
                            f"and y of shape [N]{hint} holding integer classes in [0, C)")
        c = out.shape[-1]
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= c:
            raise UserError(f"y holds class labels from {lo} to {hi}, but the model scores {c} classes: labels must lie "
                            f"in [0, {c})")
    elif out.shape != y.shape:
        hint = f"; reshape y with y.reshape({', '.join(map(str, out.shape))})" if out.numel() == y.numel() else ""
        raise UserError(f"the model's outputs have shape {o} but y has shape {t}: {loss} compares them element by "
                        f"element, so the shapes must match exactly{hint}")


@torch.no_grad()
def finetune_params(
    params: Params, loss_fn: Callable[[Params], Tensor], rule: UpdateRule, steps: int, oracle="fo", seed: int = 0
) -> tuple[Params, dict]:
    """Run ``steps`` of ``rule`` on ``loss_fn`` from ``params``; returns the new params and a report
    ``{"losses": [loss before each step and after the last], "queries": loss evaluations used}``.

    A non-finite loss (checked every step) or non-finite final parameters raise :class:`DivergenceError`;
    the given ``params`` are never modified."""
    steps = check_steps(steps)
    check_rule_fits(rule, params)
    oracle = make_oracle(oracle) if isinstance(oracle, str) else oracle
    params = {k: v.detach() for k, v in params.items()}
    state = rule.init_state(params)
    losses, queries = [], 0

    def finite(loss: Tensor, j: int) -> float:
        value = float(loss)
        if value != value or value in (float("inf"), float("-inf")):
            where = "on the initial weights" if j == 0 else f"after {j} of {steps} steps"
            fix = "" if j == 0 else " or take fewer steps"
            raise DivergenceError(f"fine-tuning reached a non-finite loss ({value}) {where}: rescale x and y "
                                  f"(e.g. standardise them){fix}")
        return value

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for j in range(steps):
            loss, grads, q = oracle(loss_fn, params)
            losses.append(finite(loss, j))
            params, state, _ = rule(params, grads, state, j)
            queries += q
    losses.append(finite(loss_fn(params), steps))
    queries += 1
    bad = [k for k, v in params.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise DivergenceError(f"fine-tuning produced non-finite weights ({', '.join(bad[:3])}): rescale x and y "
                              "(e.g. standardise them) or take fewer steps")
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
    """Fine-tune ``model`` on ``(x, y)`` in place with a learned rule; returns the loss report.

    Everything is checked before the first step (data, shapes, that the model runs on ``x``); on any error,
    divergence included, the model is left as it was."""
    check_steps(steps)
    if not isinstance(model, nn.Module):
        raise UserError(f"model is a {type(model).__name__}, not a torch.nn.Module")
    if not isinstance(rule, nn.Module):
        rule = load_fine_tuner(rule)
    loss_name = None
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise UserError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or pass a function")
        loss_name, loss = loss, LOSSES[loss]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise UserError("the model has no trainable parameters (none with requires_grad=True): nothing to fine-tune")
    params = {n: model.get_parameter(n) for n in names}
    bad = [n for n, p in params.items() if not bool(torch.isfinite(p).all())]
    if bad:
        raise UserError(f"the model's parameters hold non-finite values ({', '.join(bad[:3])}) before fine-tuning: "
                        "check its initialisation or --weights")
    check_rule_fits(rule, names)
    check_examples(x, y, loss_name)
    try:
        with torch.no_grad():
            out = functional_call(model, params, (x,))
    except Exception as e:  # noqa: BLE001 - the user's forward fails on the user's x: say so in one line
        raise UserError(f"the model cannot take x of shape {shape_str(x)}: {first_line(e)}") from None
    if loss_name is not None:
        check_outputs(out, y, loss_name)
    loss_fn = lambda p: loss(functional_call(model, p, (x,)), y)
    if oracle == "zo" or isinstance(oracle, ZerothOrderOracle):
        try:  # the zeroth-order oracle evaluates the loss at q points at once, under torch.vmap
            with torch.no_grad():
                torch.vmap(loss_fn)({k: v.detach().unsqueeze(0) for k, v in params.items()})
        except Exception as e:  # noqa: BLE001
            raise UserError(f"oracle 'zo' evaluates the model under torch.vmap, which it does not support "
                            f"({first_line(e)}); use gradients instead (--oracle fo)") from None
    try:
        new, report = finetune_params(params, loss_fn, rule, steps, oracle, seed)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:  # UserError is none of these: it passes through
        raise UserError(f"fine-tuning the model failed ({first_line(e)}): with oracle 'fo' its forward must be "
                        "differentiable in its parameters and return a loss-ready tensor") from None
    with torch.no_grad():
        for n in names:
            model.get_parameter(n).copy_(new[n])
    return report
