"""``innerloop finetune``: load a user's model factory and data files, fine-tune, save the result.

Every mistake is a one-line :class:`UserError` (exit 2), found before any fine-tuning where it can be, and a
failed command writes nothing: ``--out`` is written atomically (a temporary file unique to this process in the
same folder, renamed over ``--out`` only once complete; removed on any failure), only when every weight is finite.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from innerloop.checkpoint import atomic_write
from innerloop.errors import ConfigError, DivergenceError, UserError
from innerloop.finetune import (MAX_STEPS, check_finite, finetune, first_line, frozen, load_fine_tuner, make_oracle,
                                shape_str)

STATE_DICT_HINT = "save it with torch.save(model.state_dict(), path)"


def check_steps_flag(steps: int) -> int:
    if steps < 1:
        raise UserError(f"--steps {steps} must be at least 1 (the number of fine-tuning steps)")
    if steps > MAX_STEPS:
        raise UserError(f"--steps {steps} is more than {MAX_STEPS:,}: a typo? fine-tuning takes tens to thousands of steps")
    return steps


def check_out(path: str) -> Path:
    """``--out`` must name a file in an existing, writable folder: checked before any work."""
    out = Path(path)
    if out.is_dir() or path.endswith(("/", os.sep)):
        raise UserError(f"--out {path} is a folder: name the file to write, e.g. --out {out / 'tuned.pt'}")
    folder = out.parent
    if not folder.exists():
        raise UserError(f"--out {path}: the folder {folder} does not exist; create it first (mkdir -p {folder}) "
                        "or choose another --out")
    if not folder.is_dir():
        raise UserError(f"--out {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--out {path}: the folder {folder} is not writable")
    return out


def load_factory(spec: str):
    if ":" not in spec:
        raise UserError(f"--model {spec!r}: write it as 'package.module:factory'")
    mod_name, _, attr = spec.partition(":")
    import sys

    if "" not in sys.path and os.getcwd() not in sys.path:  # `innerloop` (a console script) does not see the
        sys.path.insert(0, os.getcwd())                     # current folder, where a user's module usually is
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - ImportError, or the user's module failing as it is imported
        raise UserError(f"--model: cannot import {mod_name!r} ({first_line(e)}); is it on PYTHONPATH?") from None
    if not hasattr(module, attr):
        raise UserError(f"--model: {mod_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def build_model(spec: str) -> nn.Module:
    """Call the ``--model`` factory (no arguments); it must return an ``nn.Module``."""
    factory = load_factory(spec)
    if not callable(factory):
        raise UserError(f"--model {spec} is an object of type {type(factory).__name__}, not callable: name a function (or class) that "
                        "takes no arguments and returns your nn.Module")
    try:
        model = factory()
    except Exception as e:  # noqa: BLE001 - the user's code failed: one line naming it
        raise UserError(f"--model {spec}: calling it raised {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {spec} returned an object of type {type(model).__name__}, not a torch.nn.Module: the "
                        "factory must build and return your model")
    return model


def load_weights(model: nn.Module, path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--weights {path}: no such file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a user-facing file problem
        raise UserError(f"--weights {path} is unreadable ({first_line(e, 100)}): {STATE_DICT_HINT}") from None
    if not isinstance(state, dict):
        raise UserError(f"--weights {path} holds a {type(state).__name__}, not a state dict: {STATE_DICT_HINT}")
    odd = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if odd:
        raise UserError(f"--weights {path} is not a state dict (names -> tensors): {odd[0]!r} holds a "
                        f"{type(state[odd[0]]).__name__}; {STATE_DICT_HINT}")
    bad = [k for k, v in state.items() if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"--weights {path} holds non-finite values in {', '.join(bad[:3])}")
    mine = model.state_dict()
    problems = [f"missing {', '.join(k for k in mine if k not in state)[:80]}" if set(mine) - set(state) else "",
                f"unexpected {', '.join(k for k in state if k not in mine)[:80]}" if set(state) - set(mine) else ""]
    problems += [f"{k} is {shape_str(v)} in the file but {shape_str(mine[k])} in the model"
                 for k, v in state.items() if k in mine and v.shape != mine[k].shape][:2]
    problems = [p for p in problems if p]
    if problems:
        raise UserError(f"--weights {path} does not fit the model: {'; '.join(problems)}")
    try:
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - e.g. a dtype that cannot be copied
        raise UserError(f"--weights {path} does not fit the model ({first_line(e, 100)})") from None


def load_data(path: str) -> tuple[Tensor, Tensor]:
    """Tensors 'x' and 'y' from a torch.save'd dict or an .npz (types are checked by the caller)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--data {path}: no such file")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as d:
                data = {k: d[k] for k in d.files}
        else:
            data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a user-facing data problem
        raise UserError(f"--data {path} is unreadable ({first_line(e, 100)}): save a dict with 'x' and 'y'") from None
    if not isinstance(data, dict) or "x" not in data or "y" not in data:
        raise UserError(f"--data {path} must hold a dict with tensors 'x' and 'y'")
    out = []
    for name in ("x", "y"):
        v = data[name]
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biufc":
                raise UserError(f"--data {path}: {name} holds {v.dtype} values, not numbers")
            v = torch.from_numpy(v)
        out.append(v)
    return out[0], out[1]


def prepare_data(x, y, loss: str, model: nn.Module, path: str) -> tuple[Tensor, Tensor]:
    """Real numbers only; x (and mse targets) to the model's float dtype; class labels to int64."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise UserError(f"--data {path}: {name} is a {type(t).__name__}, not a tensor: save torch.tensor(...)")
        if t.dtype == torch.bool or t.is_complex():
            raise UserError(f"--data {path}: {name} has dtype {t.dtype}; save real numbers (floats; integer class "
                            "labels for cross_entropy)")
        check_finite(name, t)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())
    x = x.to(dtype)
    if loss == "mse":
        return x, y.to(dtype)
    if y.is_floating_point():
        if not bool((y == y.round()).all()):
            raise UserError(f"--data {path}: y holds labels that are not whole numbers (e.g. "
                            f"{float(y[y != y.round()][0]):g}): {loss} needs integer class labels in [0, C)")
    return x, y.long()


def run_finetune(args) -> dict:
    steps = check_steps_flag(args.steps)
    if (args.run_dir is None) == (args.tuner is None):
        raise UserError("name the fine-tuner: a run directory you trained, or --tuner default (shipped), not both")
    out = check_out(args.out)
    if args.tuner is not None:
        from innerloop.pretrained import load_shipped

        rule = frozen(load_shipped(args.tuner))
    else:
        rule = load_fine_tuner(args.run_dir)
    if getattr(args, "lr", None) is not None:
        if not hasattr(rule, "with_base_lr"):
            raise UserError(f"--lr anchors a fine-tuner with a base rate (rule.kind = alfa_shared); this one "
                            f"({type(rule).__name__}) has none: drop --lr")
        if not args.lr > 0:
            raise UserError(f"--lr {args.lr} must be > 0")
        rule = frozen(rule.with_base_lr(args.lr))
    model = build_model(args.model)
    if args.weights:
        load_weights(model, args.weights)
    x, y = prepare_data(*load_data(args.data), args.loss, model, args.data)
    try:
        oracle = make_oracle(args.oracle, args.zo_q, args.zo_mu, args.zo_directions, args.zo_antithetic)
        report = finetune(model, x, y, rule, steps=steps, loss=args.loss, oracle=oracle, seed=args.seed)
    except DivergenceError as e:
        raise UserError(f"{e}; nothing was written to {out}") from None
    except ConfigError as e:  # a bad estimator setting, or one that does not fit the model (orthogonal, Q > parameters)
        flags = {"oracle.q": "--zo-q", "oracle.mu": "--zo-mu", "oracle.directions": "--zo-directions"}
        message = str(e)
        for key, flag in flags.items():
            message = message.replace(key, flag)
        raise UserError(f"{message}; nothing was written to {out}") from None
    state = model.state_dict()
    try:
        atomic_write(out, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as e:
        raise UserError(f"cannot write --out {out} ({first_line(e, 100)}); nothing was written") from None
    return {"out": args.out, "initial_loss": report["losses"][0], "final_loss": report["losses"][-1],
            "steps": steps, "oracle": args.oracle, "loss_queries": report["queries"]}
