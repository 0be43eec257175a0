"""``innerloop finetune``: load a user's model factory and data files, fine-tune, save the result."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from innerloop.errors import UserError
from innerloop.finetune import finetune, load_fine_tuner


def load_factory(spec: str):
    if ":" not in spec:
        raise UserError(f"--model {spec!r}: write it as 'package.module:factory'")
    mod_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(f"--model: cannot import {mod_name!r} ({e}); is it on PYTHONPATH?") from None
    if not hasattr(module, attr):
        raise UserError(f"--model: {mod_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def load_data(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--data {path}: no such file")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as d:
                data = {k: torch.from_numpy(d[k]) for k in d.files}
        else:
            data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a user-facing data problem
        raise UserError(f"--data {path} is unreadable ({str(e).splitlines()[0][:100]}): save a dict with 'x' and 'y'") from None
    if not isinstance(data, dict) or "x" not in data or "y" not in data:
        raise UserError(f"--data {path} must hold a dict with tensors 'x' and 'y'")
    return data["x"], data["y"]


def run_finetune(args) -> dict:
    rule = load_fine_tuner(args.run_dir)
    model = load_factory(args.model)()
    if args.weights:
        try:
            model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError) as e:
            raise UserError(f"--weights {args.weights} does not fit the model ({str(e).splitlines()[0][:100]})") from None
    x, y = load_data(args.data)
    if args.loss == "mse":
        x, y = x.float(), y.float()
    else:
        x, y = x.float(), y.long()
    report = finetune(model, x, y, rule, steps=args.steps, loss=args.loss, oracle=args.oracle, seed=args.seed)
    torch.save(model.state_dict(), args.out)
    return {"out": args.out, "initial_loss": report["losses"][0], "final_loss": report["losses"][-1],
            "steps": args.steps, "oracle": args.oracle, "loss_queries": report["queries"]}
