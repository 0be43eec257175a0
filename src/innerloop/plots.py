"""``innerloop plot RUN_DIR``: the update rule's generated hyperparameters on test tasks (ALFA Figure 3).

For each inner step j and layer l, ALFA applies the learning rate alpha[l, j] = g_alpha_l * alpha0[l, j]
and the weight-decay amount beta[l, j] = g_beta_l * beta0[l, j] (its code form, spec section 3.1).
The plot shows their mean over the fixed test tasks (+-1 std across tasks): with several inner steps one
line per layer against the step; with one inner step a per-layer chart (x axis: the layer). LSLR runs
plot their learned rates the same way; SGD has nothing to plot.

Also the shared drawing conventions of the reproduction figures (``innerloop.reproduce.lft_*``):
legible legend fonts, one colour and marker per method, one line style per meta-training set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from innerloop.build import DTYPES
from innerloop.errors import UserError

#: the smallest font any figure uses (legends, tick labels of many layers)
LEGEND_FONTSIZE = 9
#: the reproduction figures: the same method has the same colour and marker in every figure
METHOD_COLORS = {"LFT": "tab:red", "L2O": "tab:blue", "MAML": "tab:green"}
METHOD_MARKERS = {"LFT": "o", "L2O": "s", "MAML": "^"}
#: meta-training sets, in order of appearance: solid, dashed, dotted
TRAIN_LINESTYLES = ["-", "--", ":", "-."]
#: values whose typical magnitudes (10th to 90th percentile of |value|) differ by more than this get a log axis
SPREAD_FOR_LOG = 100.0


def method_style(method: str) -> dict[str, Any]:
    """``color`` and ``marker`` of a method (LFT / L2O / MAML; anything else: grey / diamond)."""
    return {"color": METHOD_COLORS.get(method, "tab:gray"), "marker": METHOD_MARKERS.get(method, "D")}


def figure_legend(fig, axes, last: tuple[str, ...] = (), **kw) -> None:
    """One legend for the whole figure, below the panels (outside the data), from the first panel that
    holds each label; the labels in ``last`` (reference lines: chance, a threshold) go at the end."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    ends = [i for i, lab in enumerate(labels) if lab in last]
    keep = [i for i in range(len(labels)) if i not in ends] + ends
    handles, labels = [handles[i] for i in keep], [labels[i] for i in keep]
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=kw.pop("ncol", min(len(labels), 4)),
                   fontsize=LEGEND_FONTSIZE, frameon=False, **kw)


def generated_hyperparameters(run_dir: str | Path, tasks: int = 100, steps: int | None = None) -> dict[str, Any]:
    """``{"layers": [...], "lr": [tasks, steps, layers], "wd": ... or None}`` on the first ``tasks`` test tasks."""
    from innerloop.train import load_run

    cfg, meta, task_family = load_run(run_dir)
    lr, wd = generated_rates(cfg, meta, task_family, tasks, cfg.inner.steps if steps is None else steps)
    return {"layers": list(meta.learner.inner), "lr": lr, "wd": wd, "rule": cfg.rule.kind}


def generated_rates(cfg, meta, task_family, tasks: int, steps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The learning rates and weight decays ``meta``'s rule generates on the first ``tasks`` test tasks of
    ``task_family`` (``[tasks, steps, layers]`` each; decay None if the rule has none), as ``cfg`` evaluates them."""
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
    return lr, wd


def _layer_styles(layers: list[str]) -> list[dict[str, Any]]:
    """Colour per module (``blocks.0.conv`` of ``blocks.0.conv.weight``), line style, marker and hatch per
    parameter kind (weight / bias / other): many layers stay distinguishable, and a module's weight and
    bias read as a pair."""
    from matplotlib import colormaps

    modules = list(dict.fromkeys(n.rsplit(".", 1)[0] if "." in n else n for n in layers))
    cmap = colormaps["tab10" if len(modules) <= 10 else "tab20"]
    kinds = {"weight": ("-", "o", None), "bias": ("--", "s", "//")}
    styles = []
    for n in layers:
        module, kind = n.rsplit(".", 1) if "." in n else (n, n)
        ls, marker, hatch = kinds.get(kind, (":", "^", ".."))
        i = modules.index(module)
        # past 20 modules colours repeat: the marker cycle tells them apart
        styles.append({"color": cmap(i % cmap.N), "ls": ls, "marker": marker if i < cmap.N else "Dv<>p*"[i % 6],
                       "hatch": hatch})
    return styles


def _value_scale(ax, values: torch.Tensor, extent: torch.Tensor) -> str:
    """A symmetric log axis when the values' typical magnitudes span orders of magnitude (ALFA's rates run
    from 1e-4 to 1 and change sign); else linear. ``extent``: every value the axis must show (mean +- std).
    Returns the axis-label suffix."""
    a = values.abs().flatten()
    a = a[torch.isfinite(a) & (a > 0)]
    if a.numel() < 2:
        return ""
    lo, hi = torch.quantile(a, 0.1).item(), torch.quantile(a, 0.9).item()
    if hi / lo <= SPREAD_FOR_LOG:
        return ""
    e = extent.abs().flatten()
    top = e[torch.isfinite(e)].max().item()
    linthresh = 10.0 ** (torch.floor(torch.log10(torch.tensor(top))).item() - 3)  # 3 decades below the largest
    ax.set_yscale("symlog", linthresh=linthresh, linscale=0.5)
    return f"  (symlog: linear within ±{linthresh:.0e})"


def hyperparameter_figure(data: dict[str, Any], title: str = ""):
    """The figure of :func:`generated_hyperparameters`'s output (a ``matplotlib.figure.Figure``, not saved):
    one panel per hyperparameter; lines against the inner step, or bars against the layer for one step."""
    from matplotlib.figure import Figure

    layers = data["layers"]
    panels = [("lr", "learning rate α")] + ([("wd", "weight decay β")] if data["wd"] is not None else [])
    tasks, steps = data["lr"].shape[0], data["lr"].shape[1]
    styles = _layer_styles(layers)
    symbol = {"lr": "α", "wd": "β"}
    if steps == 1:  # one value per layer: a bar per layer, labelled by name
        width = max(7.0, 0.45 * len(layers) + 2.5)
        fig = Figure(figsize=(width, 4.6 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    else:
        fig = Figure(figsize=(6.5 * len(panels), 4.8 + 0.18 * max(0, len(layers) - 8)), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, name) in zip(axes, panels):
        v = data[key].double()  # [tasks, steps, layers]
        mean, std = v.mean(0), (v.std(0) if v.shape[0] > 1 else torch.zeros_like(v[0]))
        suffix = _value_scale(ax, mean, torch.cat([mean - std, mean + std]))
        ax.axhline(0.0, color="black", lw=0.6)
        ax.grid(True, axis="y", alpha=0.3)
        ax.tick_params(labelsize=LEGEND_FONTSIZE + 1)
        if steps == 1:
            x = range(len(layers))
            bars = ax.bar(x, mean[0].tolist(), yerr=std[0].tolist(), capsize=3, edgecolor="black", linewidth=0.6,
                          color=[s["color"] for s in styles], hatch=None, error_kw={"lw": 0.8})
            for bar, s in zip(bars, styles):
                bar.set_hatch(s["hatch"])
            for i, (m, sd) in enumerate(zip(mean[0].tolist(), std[0].tolist())):  # the value, past its error bar
                ax.annotate(f"{m:.2g}", (i, m + sd if m >= 0 else m - sd), xytext=(0, 3 if m >= 0 else -3),
                            textcoords="offset points", ha="center", va="bottom" if m >= 0 else "top",
                            fontsize=LEGEND_FONTSIZE - 1)
            ax.margins(y=0.12)
            ax.set_xticks(list(x), layers, rotation=40, ha="right", rotation_mode="anchor",
                          fontsize=LEGEND_FONTSIZE)
            ax.set_xlabel("layer (parameter tensor)")
            ax.set_title(f"per-layer {name} at the single inner step")
        else:
            x = list(range(1, steps + 1))
            for l, (layer, s) in enumerate(zip(layers, styles)):
                ax.plot(x, mean[:, l].tolist(), color=s["color"], ls=s["ls"], marker=s["marker"], ms=4, lw=1.5,
                        label=layer)
                ax.fill_between(x, (mean[:, l] - std[:, l]).tolist(), (mean[:, l] + std[:, l]).tolist(),
                                color=s["color"], alpha=0.12, lw=0)
            ax.set_xticks(x)
            ax.set_xlabel("inner step j")
            ax.set_title(f"{name}[l, j] per layer l and inner step j")
        ax.set_ylabel(f"{name} = g_{symbol[key]} · {symbol[key]}₀" if data.get("rule") == "alfa" else name,
                      fontsize=LEGEND_FONTSIZE + 1)
        if suffix:
            ax.set_ylabel(ax.get_ylabel() + "\n" + suffix.strip(), fontsize=LEGEND_FONTSIZE + 1)
    if steps > 1:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=LEGEND_FONTSIZE,
                   title="layer", title_fontsize=LEGEND_FONTSIZE, ncol=1 if len(layers) <= 24 else 2)
    rule = str(data.get("rule", "")).upper()
    fig.suptitle(f"{title + ': ' if title else ''}{rule} generated hyperparameters\n{steps} inner step"
                 f"{'s' if steps > 1 else ''}; mean ± std over {tasks} test tasks", fontsize=LEGEND_FONTSIZE + 3)
    return fig


def plot_run(run_dir: str | Path, out: str | Path | None = None, tasks: int = 100, steps: int | None = None) -> Path:
    """Write the PNG (default ``RUN_DIR/hyperparameters.png``) and return its path."""
    data = generated_hyperparameters(run_dir, tasks, steps)
    fig = hyperparameter_figure(data, title=Path(run_dir).resolve().name)
    path = Path(out) if out else Path(run_dir) / "hyperparameters.png"
    fig.savefig(path, dpi=120)
    return path
