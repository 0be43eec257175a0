"""``innerloop plot RUN_DIR``: the update rule's generated hyperparameters on test tasks (ALFA Figure 3).

For each inner step j and layer l, ALFA applies the learning rate alpha[l, j] = g_alpha_l * alpha0[l, j]
and the weight-decay amount beta[l, j] = g_beta_l * beta0[l, j] (its code form, spec section 3.1).
The plot shows their mean over the fixed test tasks (band: +-1 std across tasks), one line per layer.
LSLR runs plot their learned rates the same way; SGD has nothing to plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from innerloop.build import DTYPES
from innerloop.errors import UserError


def generated_hyperparameters(run_dir: str | Path, tasks: int = 100, steps: int | None = None) -> dict[str, Any]:
    """``{"layers": [...], "lr": [tasks, steps, layers], "wd": ... or None}`` on the first ``tasks`` test tasks."""
    from innerloop.train import load_run

    cfg, meta, task_family, _ = load_run(run_dir)
    steps = cfg.inner.steps if steps is None else steps
    kw = {"dtype": DTYPES[cfg.train.dtype], "device": cfg.train.device}
    infos = []
    if hasattr(task_family, "eval_batches"):
        batches = task_family.eval_batches(tasks, cfg.eval.seed, cfg.task.eval_query, cfg.eval.chunk, **kw)
    else:
        batches = [task_family.eval_set(tasks, cfg.eval.seed, cfg.task.eval_query, **kw)]
    for i, b in enumerate(batches):
        infos.append(meta.evaluate(b, steps=steps, chunk=cfg.eval.chunk, seed=cfg.eval.seed + i)[1])
    if not infos[0] or "lr" not in infos[0]:
        raise UserError(f"rule.kind = '{cfg.rule.kind}' generates no per-step hyperparameters to plot: use an ALFA run")
    lr = torch.cat([i["lr"] for i in infos])
    wd = torch.cat([i["wd"] for i in infos]) if "wd" in infos[0] else None
    return {"layers": list(meta.learner.inner), "lr": lr, "wd": wd, "rule": cfg.rule.kind}


def plot_run(run_dir: str | Path, out: str | Path | None = None, tasks: int = 100, steps: int | None = None) -> Path:
    """Write the PNG (default ``RUN_DIR/hyperparameters.png``) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = generated_hyperparameters(run_dir, tasks, steps)
    panels = [("lr", "learning rate  alpha[l, j]")] + ([("wd", "weight decay  beta[l, j]")] if data["wd"] is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    layers = data["layers"]
    cmap = plt.get_cmap("viridis", max(len(layers), 2))
    for ax, (key, title) in zip(axes[0], panels):
        v = data[key].double()  # [tasks, steps, layers]
        mean, std = v.mean(0), v.std(0) if v.shape[0] > 1 else torch.zeros_like(v[0])
        x = torch.arange(1, v.shape[1] + 1)
        for l, name in enumerate(layers):
            ax.plot(x, mean[:, l], marker="o", ms=3, color=cmap(l), label=name)
            ax.fill_between(x, mean[:, l] - std[:, l], mean[:, l] + std[:, l], color=cmap(l), alpha=0.15)
        ax.set_xlabel("inner step j")
        ax.set_title(title)
        ax.set_xticks(x)
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{Path(run_dir).name}: generated hyperparameters, mean +- std over {data['lr'].shape[0]} test tasks")
    fig.tight_layout()
    path = Path(out) if out else Path(run_dir) / "hyperparameters.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
