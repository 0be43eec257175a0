"""LFT Table 2 / Figure 3: incongruous 2-way 5-shot classification (MNIST-MLP and CIFAR-CNN tasks).

LFT, L2O and MAML are meta-trained on CIFAR-10 CNN tasks (congruous) and on MNIST-MLP + CIFAR-CNN
tasks (incongruous; MAML does not apply), first-order, then evaluated on 500 fixed test tasks of each
source and of their mixture: accuracy on D_val (15 test images per class) after 1, 5, 10, 20, 50 and
100 fine-tuning steps from a fresh random initialisation (MAML: from its learned one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from innerloop.errors import UserError
from innerloop.evaluate import pooled
from innerloop.reproduce.paired import paired, paired_table, pooled_columns
from innerloop.reproduce.runner import writes_report, Row, default_device, rescored_lines, train_table, truncated_horizon
TRAIN = {"CIFAR-10 (CNN)": ["cifar10"], "MNIST+CIFAR-10": ["mnist", "cifar10"]}
TEST = {"MNIST (MLP)": ["mnist"], "CIFAR-10 (CNN)": ["cifar10"], "mixed": ["mnist", "cifar10"]}
COLUMNS = pooled_columns(TEST)  # the mixture pools the two sources' test tasks
METHODS = {"MAML": "lft/classification-maml", "L2O": "lft/classification-l2o", "LFT": "lft/classification"}
STEPS = [0, 1, 5, 10, 20, 50, 100]
#: LFT Table 2 (accuracy %, the paper's +- is a std); 27% / 35% on 2-way tasks are below chance (spec 13)
PAPER = {
    ("CIFAR-10 (CNN)", "MAML", "CIFAR-10 (CNN)"): 66,
    ("CIFAR-10 (CNN)", "L2O", "MNIST (MLP)"): 27, ("CIFAR-10 (CNN)", "L2O", "CIFAR-10 (CNN)"): 63,
    ("CIFAR-10 (CNN)", "L2O", "mixed"): 44,
    ("CIFAR-10 (CNN)", "LFT", "MNIST (MLP)"): 35, ("CIFAR-10 (CNN)", "LFT", "CIFAR-10 (CNN)"): 66,
    ("CIFAR-10 (CNN)", "LFT", "mixed"): 47,
    ("MNIST+CIFAR-10", "L2O", "MNIST (MLP)"): 81, ("MNIST+CIFAR-10", "L2O", "CIFAR-10 (CNN)"): 53,
    ("MNIST+CIFAR-10", "L2O", "mixed"): 68,
    ("MNIST+CIFAR-10", "LFT", "MNIST (MLP)"): 83, ("MNIST+CIFAR-10", "LFT", "CIFAR-10 (CNN)"): 57,
    ("MNIST+CIFAR-10", "LFT", "mixed"): 72,
}
#: ``mlp`` hidden widths, CNN ``filters``, LSTM (layers, hidden): the one source of the sizes the overrides and
#: results.md use
BUDGETS = {
    "smoke": {"iterations": 2, "meta_batch": 2, "eval_tasks": 4, "steps": [0, 1, 5], "mlp": [16], "filters": 4,
              "lstm": (2, 20), "horizon": 5},
    "cpu": {"iterations": 200, "meta_batch": 5, "eval_tasks": 500, "steps": STEPS, "mlp": [32, 32], "filters": 16,
            "lstm": (1, 10), "horizon": 100},
    "paper": {"iterations": 200, "meta_batch": 5, "eval_tasks": 500, "steps": STEPS, "mlp": [128, 64], "filters": 32,
              "lstm": (2, 20), "horizon": 100},
}
#: LFT / L2O fine-tune each meta-training task for ``horizon`` steps (the test length), backpropagated through the
#: whole horizon [INFERRED; the paper's unroll is 20]. Trained on one 20-step unroll (session 3), both peaked near 90%
#: on MNIST at step 5 and fell to 60% by step 100: the LSTM keeps pushing past the steps it was trained on. Trained on
#: the 100 steps in 20-step truncated segments (session 7, superseded/truncated-20), LFT's meta-loss climbed late in
#: meta-training and its optimizees collapsed to constant outputs after step 40 (chance at step 100; truncation
#: credits each step only with its own segment's losses). Full backprop: 89.6 / 63.4 on MNIST / CIFAR-10 at step
#: 100. MAML keeps its 20-step SGD unroll.
#: ``cpu`` shrinks the (inferred) optimizees and the LSTM: a 2x20 LSTM over the 784-128-64-2 MLP (109k coordinates)
#: costs 68 s per 5 tasks of a 20-step unroll on one core, so 1000 tasks x 5 rows plus 500 test tasks x 100 steps x
#: 2 sources would take days. ``cpu``: MLP 784-32-32-2 (26k), CNN with 16 filters (7.5k), and ZO-L2L's LSTM size
#: (1 layer x 10, here with LogAndSign input): about 0.5 s per task. ``paper`` keeps the spec's sizes (a GPU budget).


#: LFT / L2O optimizees start from He-uniform weights with zero biases [INFERRED; the paper does not say]. With
#: PyTorch's default initialisation the CIFAR-only LFT row never got the 4-conv CNN off chance (50.3% at step 100,
#: superseded/truncated-20): a default-initialised 4-layer ReLU CNN's output hardly depends on its input. The
#: MNIST+CIFAR-10 rows under the default init are kept in superseded/torch-init.
INIT = 'init.scheme="kaiming"'


def rows_for(budget: str, device: str) -> list[Row]:
    b = BUDGETS[budget]
    rows = []
    for train_name, sources in TRAIN.items():
        for method, cfg in METHODS.items():
            if method == "MAML" and len(sources) > 1:
                continue
            tests = ({"CIFAR-10 (CNN)": TEST["CIFAR-10 (CNN)"]} if method == "MAML"
                     else {k: v for k, v in TEST.items() if len(v) == 1})  # "mixed" = the union, pooled in expand
            eval_sources = [s for t in tests.values() for s in t]
            rows.append(Row(
                id=f"{'cifar' if len(sources) == 1 else 'mnist-cifar'}-{method.lower()}", method=method,
                setting={"train": train_name, "ways": 2, "shots": 5}, config=cfg,
                overrides=[
                    *([] if method == "MAML" else [*truncated_horizon(b["horizon"], segment=0), INIT]),
                    f"task.sources={json.dumps(sources)}", f"task.eval_sources={json.dumps(eval_sources)}",
                    f"train.iterations={b['iterations']}", f"train.meta_batch={b['meta_batch']}",
                    f"eval.tasks={b['eval_tasks']}", f"eval.steps={b['steps'][-1]}", f"train.device=\"{device}\"",
                    f"train.checkpoint_every={min(20, b['iterations'])}", f"train.log_every={min(10, b['iterations'])}",
                    f"model.hidden={json.dumps(b['mlp'])}", f"model.filters={b['filters']}",
                    f"rule.layers={b['lstm'][0]}", f"rule.hidden={b['lstm'][1]}",
                ],
                paper=None, evals={t: {"sources": s, "record": b["steps"]} for t, s in tests.items()},
                main=next(iter(tests)),
            ))
    return rows


def expand(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One results row per (meta-training data, method, test data, fine-tuning steps); the "mixed" test
    column is the union of the two sources' test tasks (each source evaluated once)."""
    rows = []
    for r in results:
        evals = dict(r.get("evals", {}))
        if "MNIST (MLP)" in evals and "CIFAR-10 (CNN)" in evals:
            a, b = evals["MNIST (MLP)"], evals["CIFAR-10 (CNN)"]
            by = [pooled([{**x, "tasks": a["tasks"]}, {**y, "tasks": b["tasks"]}]) | {"steps": x["steps"]}
                  for x, y in zip(a["by_steps"], b["by_steps"])]
            evals["mixed"] = {"tasks": a["tasks"] + b["tasks"], "steps": a["steps"], "by_steps": by}
        for test, res in evals.items():
            for s in res["by_steps"]:
                last = s["steps"] == res["steps"]
                rows.append({
                    "method": r["method"], "setting": {**r["setting"], "test": test, "steps": s["steps"]},
                    "metric": "accuracy", "mean": s["mean"], "ci95": s["ci95"], "std": s["std"], "tasks": res["tasks"],
                    "paper": PAPER.get((r["setting"]["train"], r["method"], test)) if last else None,
                    "iterations": r["iterations"], "train_wall_s": r["train_wall_s"], "device": r["device"],
                })
    return rows


def figure(rows: list[dict[str, Any]]):
    """Figure 3 as a ``matplotlib.figure.Figure`` (not saved): accuracy against fine-tuning steps (mean +- 95%
    CI), one panel per test source; colour and marker: method, line style: meta-training data. The step axis
    is symmetric-log (linear from 0 to 1), so step 0 sits at 0."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    from innerloop.plots import LEGEND_FONTSIZE, TRAIN_LINESTYLES, figure_legend, method_style

    fig = Figure(figsize=(5.2 * len(TEST), 5.4), layout="constrained")
    axes = fig.subplots(1, len(TEST), squeeze=False)[0]
    order = {m: i for i, m in enumerate(("LFT", "L2O", "MAML"))}
    test_names = {"mixed": "mixed (MNIST-MLP and CIFAR-CNN tasks)"}
    for ax, test in zip(axes, TEST):
        curves: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
        tasks = set()
        for r in rows:
            if r["setting"]["test"] == test:
                curves.setdefault((r["method"], r["setting"]["train"]), []).append(
                    (r["setting"]["steps"], r["mean"], r["ci95"]))
                tasks.add(r["tasks"])
        # legend columns: one per method, rows: the meta-training data
        for (method, train), pts in sorted(curves.items(), key=lambda kv: (
                order.get(kv[0][0], len(order)), list(TRAIN).index(kv[0][1]) if kv[0][1] in TRAIN else len(TRAIN))):
            pts.sort()
            ls = TRAIN_LINESTYLES[list(TRAIN).index(train) % len(TRAIN_LINESTYLES)] if train in TRAIN else "-."
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], ls=ls, lw=1.8, ms=5,
                        capsize=3, label=f"{method}, meta-trained on {train}", **method_style(method))
        ax.axhline(50, color="grey", lw=1, ls=(0, (1, 2)), label="chance (50%)")
        ax.set_xscale("symlog", linthresh=1, linscale=0.5)
        steps = sorted({p[0] for pts in curves.values() for p in pts})
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(-0.1, max(steps, default=1) * 1.3)
        ax.set_title(f"test tasks: {test_names.get(test, test)}" + (f"\n({tasks.pop()} tasks)" if len(tasks) == 1 else ""),
                     fontsize=LEGEND_FONTSIZE + 2)
        ax.set_xlabel("fine-tuning steps (log scale past 1)")
        ax.set_ylabel("accuracy on D_val (%)")
        ax.tick_params(labelsize=LEGEND_FONTSIZE + 1)
        ax.grid(True, alpha=0.3)
    figure_legend(fig, axes, last=("chance (50%)",), ncol=3)
    fig.suptitle("LFT Figure 3: incongruous 2-way 5-shot classification from a fresh initialisation (MAML: its "
                 "learned one),\naccuracy against fine-tuning steps, mean ± 95% CI over the test tasks",
                 fontsize=LEGEND_FONTSIZE + 3)
    return fig


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Figure 3: accuracy against fine-tuning steps, one panel per test source."""
    figure(rows).savefig(path, dpi=110)


def steps_table(rows: list[dict[str, Any]], steps: list[int]) -> list[str]:
    """Figure 3 as numbers: accuracy of every finished row at each recorded number of fine-tuning steps."""
    at = {(r["setting"]["train"], r["method"], r["setting"]["test"], r["setting"]["steps"]): r for r in rows}
    lines = ["Accuracy against fine-tuning steps (the same test tasks; the table above is the last column):", "",
             "| meta-training | method | test | " + " | ".join(f"{s} step" + "s" * (s != 1) for s in steps) + " |",
             "|---|---|---|" + "---|" * len(steps)]
    for train in TRAIN:
        for method in METHODS:
            for test in TEST:
                cells = [at.get((train, method, test, s)) for s in steps]
                if any(c is not None for c in cells):
                    lines.append(f"| {train} | {method} | {test} | " + " | ".join(
                        "—" if c is None else f"{c['mean']:.1f} ± {c['ci95']:.1f}" for c in cells) + " |")
    return lines


def write_markdown(out: Path, rows: list[dict[str, Any]], budget: str, info: dict[str, Any],
                   pairs: list[dict[str, Any]] = (), notes: list[str] = ()) -> None:
    b = BUDGETS[budget]
    mlp, filters, lstm = "-".join(map(str, b["mlp"])), b["filters"], "x".join(map(str, b["lstm"]))
    last = {(r["setting"]["train"], r["method"], r["setting"]["test"]): r for r in rows
            if r["setting"]["steps"] == b["steps"][-1]}
    lines = [
        "# LFT Table 2 — incongruous 2-way 5-shot classification (accuracy %, mean ± 95% CI)",
        "",
        f"Budget `{budget}`; produced by `innerloop reproduce lft-classification --budget {budget} --out DIR` "
        "(data: `--data DIR` or `$INNERLOOP_DATA`, the folder holding `mnist/` and `cifar10/`).",
        "Hardware: " + ", ".join(f"{k} {v}" for k, v in info["hardware"].items())
        + f". Training wall time of the finished rows: {info['train_wall_s'] / 60:.1f} min.",
        "",
        f"Protocol: 2 of the 10 classes per task, relabelled 0/1; D_tr = 5 training images per class, D_val = 15 test "
        f"images per class. MNIST tasks: MLP 784-{mlp}-2 (ReLU); CIFAR-10 tasks (the 4,000-image subset): 4 x [conv3x3 "
        f"{filters} -> ReLU -> max-pool] -> linear, no batch norm; fresh He-uniform random initialisation with zero biases per task (LFT, "
        f"L2O). Meta-training: {b['iterations']} iterations x {b['meta_batch']} tasks, Adam 1e-3, meta-gradient clipped to "
        f"[-1, 1]; LFT / L2O fine-tune each task for {b['horizon']} steps, backpropagated through all of them "
        f"(one meta-update per meta-batch); LSTM {lstm}, LogAndSign, no bias, scale 0.01, first order. MAML: SGD 0.01, 20 steps. "
        f"Test: {b['eval_tasks']} fixed tasks per source; accuracy after {b['steps'][-1]} steps (curves: figure3.png).",
        "",
        "| meta-training | method | test MNIST (MLP) | test CIFAR-10 (CNN) | test mixed |",
        "|---|---|---|---|---|",
    ]
    for train in TRAIN:
        for method in METHODS:
            if method == "MAML" and train != "CIFAR-10 (CNN)":
                continue
            cells = []
            for test in TEST:
                r, p = last.get((train, method, test)), PAPER.get((train, method, test))
                text = "—" if r is None else f"{r['mean']:.1f} ± {r['ci95']:.1f}"
                if r is None and method == "MAML" and test != "CIFAR-10 (CNN)":
                    text = "N/A"
                cells.append(text + (f" (paper {p})" if p is not None else ""))
            lines.append(f"| {train} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "Paper values: LFT Table 2 (its ± is a standard deviation; 27% and 35% on 2-way tasks are below "
              "chance, see the spec).", ""]
    lines += steps_table(rows, b["steps"])
    if pairs:
        lines += ["", *paired_table(list(pairs), ["train"], b["steps"], "accuracy points")]
    lines += list(notes)
    lines += ["", "![accuracy against fine-tuning steps](figure3.png)", ""]
    (out / "results.md").write_text("\n".join(lines))


def reproduce(budget: str, out: str, jobs: int = 1, device: str | None = None, only: str | None = None) -> dict[str, Any]:
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r} for lft-classification; use one of {', '.join(BUDGETS)}")
    device = default_device(device)
    trained, info = train_table(rows_for(budget, device), out, jobs, only, "mnist-cifar-lft", device)
    table, pairs = expand(trained), paired(trained, lambda r: {"train": r["setting"]["train"]}, COLUMNS)
    report = {"name": "lft-classification", "budget": budget, **info, "rows": table, "paired": pairs}
    if not writes_report():  # another process of a torchrun job: it trained its share; rank 0 writes the report
        return report
    out_path = Path(out)
    (out_path / "results.json").write_text(json.dumps(report, indent=1))
    plot(table, out_path / "figure3.png")
    write_markdown(out_path, table, budget, info, pairs, rescored_lines(trained))
    print(f"wrote {out_path / 'results.md'}, results.json and figure3.png")
    return report
