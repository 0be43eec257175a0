"""Evaluation on a fixed, seeded set of test tasks: mean and 95% confidence interval."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from innerloop.build import DTYPES
from innerloop.config import Config
from innerloop.engine import MetaLearner
from innerloop.errors import UserError


def mean_ci95(values: torch.Tensor) -> tuple[float, float]:
    """Mean and 1.96 * std / sqrt(n) (the half-width the papers report as +-)."""
    v = values.double()
    n = v.numel()
    std = float(v.std(unbiased=True)) if n > 1 else 0.0
    return float(v.mean()), 1.96 * std / math.sqrt(n)


def evaluate_meta(cfg: Config, meta: MetaLearner, tasks, n_tasks: int | None = None, steps: int | None = None) -> dict[str, Any]:
    """Adapt on ``shots`` support points of each fixed test task, score on ``eval_query`` points."""
    n_tasks = cfg.eval.tasks if n_tasks is None else n_tasks
    steps = (cfg.eval.steps if cfg.eval.steps is not None else cfg.inner.steps) if steps is None else steps
    if n_tasks < 1:
        raise UserError("--tasks must be >= 1")
    if steps < 0:
        raise UserError("--steps must be >= 0")
    batch = tasks.eval_set(
        n_tasks, cfg.eval.seed, cfg.task.eval_query, dtype=DTYPES[cfg.train.dtype], device=cfg.train.device
    )
    values, _ = meta.evaluate(batch, steps=steps, chunk=cfg.eval.chunk)
    mean, ci = mean_ci95(values)
    metric = "mse" if meta.learner.loss_name == "mse" else "accuracy"
    if metric == "accuracy":
        mean, ci = 100 * mean, 100 * ci
    return {"metric": metric, "mean": mean, "ci95": ci, "tasks": n_tasks, "steps": steps}


def evaluate_run(run_dir: str | Path, n_tasks: int | None = None, steps: int | None = None) -> dict[str, Any]:
    from innerloop.train import load_run

    cfg, meta, tasks, _ = load_run(run_dir)
    return evaluate_meta(cfg, meta, tasks, n_tasks, steps)
