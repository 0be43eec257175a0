"""Evaluation on a fixed, seeded set of test tasks: mean and 95% confidence interval."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch

from innerloop import distributed
from innerloop.oracles import draws_in_order
from innerloop.progress import Progress
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


def pooled(parts: list[dict[str, Any]], keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Mean, std and 95% CI of the union of task sets given as ``{"mean", "std", "tasks"}`` each (e.g. the
    mixture column from per-source evaluations); ``keys`` are other per-set means averaged by task count."""
    n = sum(p["tasks"] for p in parts)
    mean = sum(p["mean"] * p["tasks"] for p in parts) / n
    ss = sum((p["tasks"] - 1) * p["std"] ** 2 + p["tasks"] * (p["mean"] - mean) ** 2 for p in parts)
    std = math.sqrt(ss / (n - 1)) if n > 1 else 0.0
    out = {"mean": mean, "std": std, "ci95": 1.96 * std / math.sqrt(n), "tasks": n}
    out.update({k: sum(p[k] * p["tasks"] for p in parts) / n for k in keys})
    return out


def paired_difference(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean and 95% CI of ``a_i - b_i`` over the same fixed test tasks (two methods scored on one task list):
    the task-to-task spread both methods share cancels, so the CI is that of the difference itself."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired difference needs two equal, non-empty task lists (got {len(a)} and {len(b)})")
    mean, ci = mean_ci95(torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64))
    return {"mean": mean, "ci95": ci, "tasks": len(a)}


def has_values(result: dict[str, Any]) -> bool:
    """Whether an evaluation carries per-task scores at every recorded step (rows scored before they were kept
    do not)."""
    return all("values" in s for s in result.get("by_steps", [result]))


def without_values(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without its per-task scores (for a one-line summary on the terminal)."""
    out = {k: v for k, v in result.items() if k != "values"}
    if "by_steps" in out:
        out["by_steps"] = [{k: v for k, v in s.items() if k != "values"} for s in out["by_steps"]]
    return out


def evaluate_meta(cfg: Config, meta: MetaLearner, tasks, n_tasks: int | None = None, steps: int | None = None,
                  record: list[int] | None = None, sources: list[str] | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Adapt on ``shots`` support points of each fixed test task, score on ``eval_query`` points.

    With ``record`` (a list of step counts), one unroll to ``max(record)`` steps is scored after each
    listed count: the result gets ``"by_steps": [{"steps", "mean", "ci95", "std", "values"}, ...]``
    (``values``: the per-task scores, in task order, for paired comparisons of two methods). For task
    mixtures, ``sources`` picks the evaluation sources (``n_tasks`` fixed tasks each). Extra metrics of
    the base learner (e.g. a perturbation's norm) are reported as ``"extra": {name: {"mean", "ci95"}}``
    after the last step (and per step in ``by_steps``). ``progress``: a progress line on stderr (tasks scored).
    """
    n_tasks = cfg.eval.tasks if n_tasks is None else n_tasks
    steps = (cfg.eval.steps if cfg.eval.steps is not None else cfg.inner.steps) if steps is None else steps
    if n_tasks < 1:
        raise UserError("--tasks must be >= 1")
    if steps < 0:
        raise UserError("--steps must be >= 0")
    trained = getattr(meta.rule, "steps", None)
    if trained is not None and max(steps, *(record or [0])) > trained:
        warnings.warn(f"innerloop: the rule's per-step meta-parameters exist for {trained} step(s); test steps beyond "
                      f"them reuse step {trained}'s (evaluate with --steps {trained} to test as trained)", stacklevel=2)
    metric = meta.learner.metric_name
    scale = 1.0 if metric == "mse" else 100.0  # accuracies and attack success rates in percent
    marks = sorted(set(record)) if record else [steps]
    kw = {"dtype": DTYPES[cfg.train.dtype], "device": cfg.train.device}
    if sources is not None:
        if not hasattr(tasks, "eval_sources"):
            raise UserError("--sources applies to runs with several task sources (task.family = records | incongruous | uap)")
        kw["sources"] = sources
    extras: dict[str, list[torch.Tensor]] = {}
    world = distributed.current()
    bar = Progress(n_tasks, enabled=progress and world.main, label="eval", unit="tasks")
    if hasattr(tasks, "eval_batches"):
        # image episodes: materialise ``chunk`` episodes at a time; chunk i draws its randomness from seed + i, so
        # chunk i can be evaluated by process i mod W of a job and the chunks gathered back in order (each process
        # still materialises every chunk's images: the episode stream is drawn in one sequence)
        mine = []
        for i, b in enumerate(tasks.eval_batches(n_tasks, cfg.eval.seed, cfg.task.eval_query, cfg.eval.chunk, **kw)):
            if i % world.size != world.rank:
                continue
            v, info = meta.evaluate(b, chunk=cfg.eval.chunk, record=marks, seed=cfg.eval.seed + i)
            mine.append((i, v, {k[len("metric/"):]: t for k, t in info.items() if k.startswith("metric/")}))
            bar.update(min(n_tasks, (i + 1) * cfg.eval.chunk), text=f"{max(marks)} steps")
        parts = sorted((p for block in distributed.gather_objects(world, mine) for p in block), key=lambda p: p[0])
        values = torch.cat([v for _, v, _ in parts])
        for _, _, ex in parts:
            for k, t in ex.items():
                extras.setdefault(k, []).append(t)
    else:
        batch = tasks.eval_set(n_tasks, cfg.eval.seed, cfg.task.eval_query, **kw)
        if world.size > 1 and not draws_in_order(meta.oracle):
            # whole ``eval.chunk`` blocks of tasks per process, each evaluated exactly as in one process (the same
            # chunks through the same batched computation, the same per-task draws), gathered in task order
            size = cfg.eval.chunk or n_tasks
            c_lo, c_hi = world.shard(-(-n_tasks // size))
            mine = (c_lo * size, min(c_hi * size, n_tasks))
            v, info = (meta.evaluate(batch, chunk=cfg.eval.chunk, record=marks, seed=cfg.eval.seed, shard=mine)
                       if c_hi > c_lo else (None, {}))
            parts = distributed.gather_objects(world, (v, {k[len("metric/"):]: t for k, t in info.items()
                                                           if k.startswith("metric/")}))
            values = torch.cat([v for v, _ in parts if v is not None])
            extras = {k: [ex[k] for v, ex in parts if v is not None] for k in next(ex for v, ex in parts
                                                                                  if v is not None)}
        elif draws_in_order(meta.oracle):  # random draws that depend on every earlier task (noise = "stream")
            values, info = meta.evaluate(batch, chunk=cfg.eval.chunk, record=marks, seed=cfg.eval.seed)
            extras = {k[len("metric/"):]: [t] for k, t in info.items() if k.startswith("metric/")}
        else:  # one process: ``eval.chunk`` tasks at a time (each exactly as in the whole batch), for the progress line
            size, parts = cfg.eval.chunk or n_tasks, []
            for lo in range(0, n_tasks, size):
                parts.append(meta.evaluate(batch, chunk=cfg.eval.chunk, record=marks, seed=cfg.eval.seed,
                                           shard=(lo, min(lo + size, n_tasks))))
                bar.update(min(lo + size, n_tasks), text=f"{max(marks)} steps")
            values = torch.cat([v for v, _ in parts])
            extras = {k[len("metric/"):]: [i[k] for _, i in parts] for k in parts[0][1] if k.startswith("metric/")}
    bar.close()
    extra = {k: torch.cat(v) for k, v in extras.items()}  # [tasks, marks]
    n_tasks = values.shape[0]
    by_steps = []
    for i, m in enumerate(marks):
        mean, ci = mean_ci95(values[:, i])
        by_steps.append({"steps": m, "mean": scale * mean, "ci95": scale * ci,
                         "std": scale * float(values[:, i].double().std()) if n_tasks > 1 else 0.0,
                         "values": [round(scale * float(v), 4) for v in values[:, i]]})
        for k, t in extra.items():
            by_steps[-1][k] = mean_ci95(t[:, i])[0]
    last = by_steps[-1]
    out = {"metric": metric, "mean": last["mean"], "ci95": last["ci95"], "tasks": n_tasks, "steps": last["steps"],
           "values": last["values"]}
    if extra:
        out["extra"] = {k: dict(zip(("mean", "ci95"), mean_ci95(t[:, -1]))) for k, t in extra.items()}
    if record:
        out["by_steps"] = by_steps
    return out


def evaluate_run(run_dir: str | Path, n_tasks: int | None = None, steps: int | None = None,
                 record: list[int] | None = None, sources: list[str] | None = None,
                 task: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Score a run directory on its fixed test tasks (see :func:`evaluate_meta`); ``task``: ``[task]`` settings to
    evaluate under instead, e.g. ``{"eval_dataset": "mnist", "eval_split": "test", "shots": 5}`` (cross-domain:
    the fixed episodes of that dataset, at the model's input size). Only evaluation data is read."""
    from innerloop.train import load_run

    cfg, meta, tasks = load_run(run_dir, task)
    return evaluate_meta(cfg, meta, tasks, n_tasks, steps, record, sources, progress)


def eval_task_settings(dataset: str | None = None, split: str | None = None, ways: int | None = None,
                       shots: int | None = None, query: int | None = None) -> dict[str, Any]:
    """``innerloop eval``'s ``--dataset/--split/--ways/--shots/--query`` as ``[task]`` settings (only those given)."""
    out: dict[str, Any] = {}
    if dataset is not None:
        out["eval_dataset"] = dataset
        out["eval_root"] = ""
        out["eval_split"] = split or "test"
    elif split is not None:
        out["eval_split"] = split
    if ways is not None:
        out["ways"] = ways
    if shots is not None:
        out["shots"] = shots
    if query is not None:
        out["eval_query"] = query
    return out


#: how each metric is named and printed (accuracies and attack success rates are stored in percent)
METRIC_TEXT = {"accuracy": ("accuracy", "%"), "mse": ("MSE", ""), "asr": ("attack success rate", "%")}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_result(result: dict[str, Any]) -> str:
    """An evaluation as one line for people, e.g. ``test accuracy 95.96% ± 0.38 (95% CI over 600 tasks, 1 step)``;
    extra metrics (e.g. a perturbation's distortion) follow on their own lines."""
    name, unit = METRIC_TEXT.get(result["metric"], (result["metric"], ""))
    digits = 2 if unit == "%" else 4
    lines = [f"test {name} {result['mean']:.{digits}f}{unit} ± {result['ci95']:.{digits}f} (95% CI over "
             f"{_plural(result['tasks'], 'task')}, {_plural(result['steps'], 'step')})"]
    for k, v in (result.get("extra") or {}).items():
        lines.append(f"  {k} {v['mean']:.4f} ± {v['ci95']:.4f}")
    return "\n".join(lines)


def format_training(run: str | Path, summary: dict[str, Any]) -> str:
    """``innerloop train``'s end-of-training line, e.g. ``trained 300 iterations in 2.5 min -> runs/a``."""
    secs = float(summary.get("elapsed_s", 0.0))
    took = f"{secs:.0f} s" if secs < 90 else f"{secs / 60:.1f} min" if secs < 5400 else f"{secs / 3600:.1f} h"
    return f"trained {_plural(int(summary['iterations']), 'iteration')} in {took} -> {run}"
