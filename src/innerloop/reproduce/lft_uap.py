"""LFT Table 1 / Figure 2: few-shot universal adversarial perturbations on LeNet-5 victims.

LFT, L2O and MAML are meta-trained on MNIST tasks and on MNIST + CIFAR-10 tasks (the perturbation is
784 values for MNIST and 3,072 for CIFAR-10: incongruous), first-order and zeroth-order (black-box
victim), then evaluated on 100 unseen test tasks from MNIST, CIFAR-10 and their mixture (MAML only
MNIST -> MNIST: a learned delta_0 has one size). Each cell: attack success rate on D_val after the
last fine-tuning step / distortion ||delta||_2 / sqrt(d) / the first step at which the mean ASR
reaches the threshold (default 90%). The victims come from ``innerloop victim train``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from innerloop.errors import UserError
from innerloop.evaluate import pooled
from innerloop.reproduce.paired import paired, paired_table, pooled_columns
from innerloop.reproduce.runner import writes_report, Row, default_device, rescored_lines, train_table, truncated_horizon
TRAIN = {"MNIST": ["mnist"], "MNIST+CIFAR-10": ["mnist", "cifar10"]}
TEST = {"MNIST": ["mnist"], "CIFAR-10": ["cifar10"], "MNIST+CIFAR-10": ["mnist", "cifar10"]}
COLUMNS = pooled_columns(TEST)  # the mixture pools the two sources' test tasks
#: fine-tuning steps at which the paired LFT - L2O ASR difference is reported
PAIRED_STEPS = [10, 50, 100, 200]
METHODS = {"MAML": "lft/uap-maml", "L2O": "lft/uap-l2o", "LFT": "lft/uap"}
#: ZO rows treat the estimate as a constant in the meta-gradient (``oracle.detach``, the analogue of the FO rows'
#: detached gradient input): keeping it in the graph costs 1.9x per meta-step on the MNIST victim
#: (``python benchmarks/zeroth_order.py``), which the cpu budget cannot afford at 100 steps per task
ORACLES = {"fo": ['oracle.kind="autograd"'],
           "zo": ['oracle.kind="zo"', "oracle.q=20", "oracle.mu=0.005", "oracle.detach=true"]}
#: LFT Table 1 (ASR %, distortion, step#; the paper does not say which oracle: shown beside both)
PAPER = {
    ("MNIST", "MAML", "MNIST"): (52, 0.14, None),
    ("MNIST", "L2O", "MNIST"): (85, 0.116, 122), ("MNIST", "L2O", "CIFAR-10"): (0, 0.05, None),
    ("MNIST", "L2O", "MNIST+CIFAR-10"): (25, 0.072, None),
    ("MNIST", "LFT", "MNIST"): (100, 0.104, 55), ("MNIST", "LFT", "CIFAR-10"): (25, 0.055, None),
    ("MNIST", "LFT", "MNIST+CIFAR-10"): (50, 0.079, None),
    ("MNIST+CIFAR-10", "L2O", "MNIST"): (77, 0.112, 125), ("MNIST+CIFAR-10", "L2O", "CIFAR-10"): (95, 0.069, 72),
    ("MNIST+CIFAR-10", "L2O", "MNIST+CIFAR-10"): (92, 0.096, 93),
    ("MNIST+CIFAR-10", "LFT", "MNIST"): (93, 0.101, 92), ("MNIST+CIFAR-10", "LFT", "CIFAR-10"): (100, 0.063, 55),
    ("MNIST+CIFAR-10", "LFT", "MNIST+CIFAR-10"): (100, 0.089, 68),
}
BUDGETS = {
    "smoke": {"iterations": 4, "meta_batch": 2, "eval_tasks": 4, "steps": 10, "horizon": 4},
    "cpu": {"iterations": 200, "meta_batch": 5, "eval_tasks": 100, "steps": 200, "horizon": 100},
}
#: LFT / L2O: each meta-training task is fine-tuned for ``horizon`` steps, backpropagated in segments of 20 (one
#: meta-update per segment, L2L's truncated unroll). With a 20-step horizon both LSTMs learned to attack within
#: 20 steps and then blew delta up past the unroll (LFT, kappa 2: 90% ASR at step 10, rms 0.27; 99% at step 200 with
#: rms 1.12, i.e. every pixel saturated). MAML trains its delta_0 through 20 SGD steps.
THRESHOLD = 90.0


def rows_for(budget: str, device: str) -> list[Row]:
    b = BUDGETS[budget]
    rows = []
    for train_name, sources in TRAIN.items():
        for oracle, oracle_set in ORACLES.items():
            for method, cfg in METHODS.items():
                if method == "MAML" and len(sources) > 1:
                    continue  # a meta-learned delta_0 has one size
                tests = {"MNIST": TEST["MNIST"]} if method == "MAML" else {k: v for k, v in TEST.items() if len(v) == 1}
                eval_sources = [s for t in tests.values() for s in t]
                record = list(range(0, b["steps"] + 1))
                horizon = [] if method == "MAML" else truncated_horizon(b["horizon"])
                rows.append(Row(
                    id=f"{train_name.lower().replace('+', '-')}-{method.lower()}-{oracle}", method=method,
                    setting={"train": train_name, "oracle": oracle}, config=cfg,
                    overrides=[
                        *oracle_set, *horizon, f"task.sources={json.dumps(sources)}", f"task.eval_sources={json.dumps(eval_sources)}",
                        f"train.iterations={b['iterations']}", f"train.meta_batch={b['meta_batch']}",
                        f"eval.tasks={b['eval_tasks']}", f"eval.steps={b['steps']}", f"train.device=\"{device}\"",
                        f"train.checkpoint_every={min(50, b['iterations'])}", f"train.log_every={min(10, b['iterations'])}",
                    ],
                    paper=None, evals={t: {"sources": s, "record": record} for t, s in tests.items()},
                    main=next(iter(tests)),
                ))
    return rows


def first_step(by_steps: list[dict[str, Any]], threshold: float) -> int | None:
    """The first fine-tuning step at which the mean ASR over the test tasks reaches ``threshold``."""
    return next((s["steps"] for s in by_steps if s["mean"] >= threshold), None)


def _mixture(evals: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The MNIST+CIFAR-10 test column: the union of the two sources' test tasks (each evaluated once)."""
    parts = [evals.get("MNIST"), evals.get("CIFAR-10")]
    if any(p is None for p in parts):
        return None
    by_steps = [pooled([{**a, "tasks": parts[0]["tasks"]}, {**b, "tasks": parts[1]["tasks"]}], ("l2", "rms"))
                | {"steps": a["steps"]} for a, b in zip(parts[0]["by_steps"], parts[1]["by_steps"])]
    last = by_steps[-1]
    return {"mean": last["mean"], "ci95": last["ci95"], "tasks": last["tasks"], "steps": last["steps"],
            "extra": {k: {"mean": last[k]} for k in ("l2", "rms")}, "by_steps": by_steps}


def expand(results: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """One results row per (meta-training data, method, oracle, test data)."""
    rows = []
    for r in results:
        evals = dict(r.get("evals", {}))
        mixed = _mixture(evals)
        if mixed is not None:
            evals["MNIST+CIFAR-10"] = mixed
        for test, res in evals.items():
            paper = PAPER.get((r["setting"]["train"], r["method"], test))
            rows.append({
                "method": r["method"], "setting": {**r["setting"], "test": test, "steps": res["steps"]},
                "metric": "asr", "mean": res["mean"], "ci95": res["ci95"], "tasks": res["tasks"],
                "paper": None if paper is None else paper[0],
                "distortion_rms": res["extra"]["rms"]["mean"], "distortion_l2": res["extra"]["l2"]["mean"],
                "step_to_threshold": first_step(res["by_steps"], threshold), "threshold": threshold,
                "paper_distortion": None if paper is None else paper[1], "paper_step": None if paper is None else paper[2],
                "asr_by_step": [s["mean"] for s in res["by_steps"]],
                "iterations": r["iterations"], "train_wall_s": r["train_wall_s"], "device": r["device"],
            })
    return rows


def figure(rows: list[dict[str, Any]]):
    """Figure 2 as a ``matplotlib.figure.Figure`` (not saved): mean ASR against fine-tuning steps, one panel
    per (oracle, test data); colour and marker: method, line style: meta-training data."""
    from matplotlib.figure import Figure

    from innerloop.plots import LEGEND_FONTSIZE, TRAIN_LINESTYLES, figure_legend, method_style

    fig = Figure(figsize=(15, 9), layout="constrained")
    axes = fig.subplots(len(ORACLES), len(TEST), squeeze=False)
    oracle_names = {"fo": "first-order (white-box victim)", "zo": "zeroth-order (black-box victim)"}
    order = {m: i for i, m in enumerate(("LFT", "L2O", "MAML"))}
    for i, oracle in enumerate(ORACLES):
        for j, test in enumerate(TEST):
            ax = axes[i][j]
            panel = [r for r in rows if r["setting"]["oracle"] == oracle and r["setting"]["test"] == test]
            # legend columns: one per method, rows: the meta-training data
            panel.sort(key=lambda r: (order.get(r["method"], len(order)), list(TRAIN).index(r["setting"]["train"])
                                      if r["setting"]["train"] in TRAIN else len(TRAIN)))
            for r in panel:
                y = r["asr_by_step"]
                train = r["setting"]["train"]
                ls = TRAIN_LINESTYLES[list(TRAIN).index(train) % len(TRAIN_LINESTYLES)] if train in TRAIN else "-."
                ax.plot(range(len(y)), y, ls=ls, lw=1.8, ms=5, markevery=max(1, len(y) // 8),
                        label=f"{r['method']}, meta-trained on {train}", **method_style(r["method"]))
            ax.axhline(THRESHOLD, color="grey", lw=1, ls=(0, (1, 2)), label=f"{THRESHOLD:g}% threshold")
            tasks = {r["tasks"] for r in panel}
            ax.set_title(f"{oracle_names.get(oracle, oracle.upper())}\ntest tasks: {test}"
                         + (f" ({tasks.pop()} tasks)" if len(tasks) == 1 else ""), fontsize=LEGEND_FONTSIZE + 2)
            ax.set_ylim(0, 100)
            ax.set_xlabel("fine-tuning steps")
            ax.set_ylabel("attack success rate (%)")
            ax.tick_params(labelsize=LEGEND_FONTSIZE + 1)
            ax.grid(True, alpha=0.3)
    figure_legend(fig, [ax for row in axes for ax in row], last=(f"{THRESHOLD:g}% threshold",), ncol=3)
    fig.suptitle("LFT Figure 2: few-shot universal adversarial perturbations on LeNet-5 victims, "
                 "mean attack success rate on D_val against fine-tuning steps", fontsize=LEGEND_FONTSIZE + 4)
    return fig


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Figure 2: ASR against fine-tuning steps, one panel per (oracle, test data)."""
    figure(rows).savefig(path, dpi=110)


def write_markdown(out: Path, rows: list[dict[str, Any]], budget: str, info: dict[str, Any], victims: dict,
                   pairs: list[dict[str, Any]] = (), notes: list[str] = ()) -> None:
    b = BUDGETS[budget]
    cell = lambda r: "—" if r is None else (
        f"{r['mean']:.0f}% ± {r['ci95']:.0f} / {r['distortion_rms']:.3f} / {r['step_to_threshold'] or 'N/A'}")
    by = {(r["setting"]["train"], r["method"], r["setting"]["oracle"], r["setting"]["test"]): r for r in rows}
    lines = [
        "# LFT Table 1 — few-shot universal adversarial perturbations on LeNet-5",
        "",
        f"Budget `{budget}`; produced by `innerloop reproduce lft-uap --budget {budget} --out DIR` "
        "(data: `--data DIR` or `$INNERLOOP_DATA`; victims: `$INNERLOOP_VICTIMS`, default `results/victims`).",
        "Hardware: " + ", ".join(f"{k} {v}" for k, v in info["hardware"].items())
        + f". Training wall time of the finished rows: {info['train_wall_s'] / 60:.1f} min.",
        "",
        "Victims (`innerloop victim train`): " + ", ".join(
            f"{k}: test accuracy {100 * v['test_accuracy']:.2f}%" for k, v in victims.items()) + ".",
        "",
        f"Protocol: 2 classes x 5 training images (D_tr) and 2 x 5 test images (D_val) per task, only images the victim "
        f"classifies correctly; loss = C&W margin on log-probabilities with confidence kappa = 2 + lambda ||delta||^2 (lambda = "
        f"0.05), x + delta clamped to [0, 1]; delta_0 ~ 1e-4 N(0, 1) (LFT, L2O) or meta-learned (MAML, SGD 0.01). Meta-training: "
        f"{b['iterations']} iterations x {b['meta_batch']} tasks, Adam 1e-3, meta-gradient clipped to [-1, 1]; LFT / L2O "
        f"fine-tune each task for {b['horizon']} steps with one meta-update per 20-step segment (truncated backprop), "
        "MAML unrolls 20 SGD steps. "
        f"Test: {b['eval_tasks']} fixed tasks per source, {b['steps']} fine-tuning steps. ZO: the fine-tuner sees "
        "estimates from q = 20 Gaussian directions (mu = 0.005) in meta-training and at test, the estimate a constant in "
        "the meta-gradient (`oracle.detach`; the validation loss is still backpropagated through the victim in "
        "meta-training); at test the victim is only queried (forward calls, never a backward).",
        "",
        f"Cell: ASR after {b['steps']} steps ± 95% CI / distortion ||delta||_2 / sqrt(d) / first step with mean ASR >= "
        f"{THRESHOLD:.0f}% (N/A: never). Paper values in brackets (LFT Table 1 does not say which oracle).",
        "",
        "| meta-training | method | oracle | test MNIST | test CIFAR-10 | test MNIST+CIFAR-10 |",
        "|---|---|---|---|---|---|",
    ]
    for train in TRAIN:
        for method in METHODS:
            for oracle in ORACLES:
                if method == "MAML" and train != "MNIST":
                    continue
                cells = []
                for test in TEST:
                    r = by.get((train, method, oracle, test))
                    p = PAPER.get((train, method, test))
                    text = cell(r)
                    if p is not None:
                        text += f" ({p[0]}% / {p[1]} / {p[2] or 'N/A'})"
                    elif method == "MAML" and test != "MNIST":
                        text = "N/A"
                    cells.append(text)
                lines.append(f"| {train} | {method} | {oracle.upper()} | " + " | ".join(cells) + " |")
    if pairs:
        steps = sorted({p["setting"]["steps"] for p in pairs})
        lines += ["", *paired_table(list(pairs), ["train", "oracle"], steps, "ASR points")]
    lines += list(notes)
    lines += ["", "![ASR against fine-tuning steps](figure2.png)", ""]
    (out / "results.md").write_text("\n".join(lines))


def reproduce(budget: str, out: str, jobs: int = 1, device: str | None = None, only: str | None = None) -> dict[str, Any]:
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r} for lft-uap; use one of {', '.join(BUDGETS)}")
    os.environ.setdefault("INNERLOOP_VICTIMS", str(Path("results") / "victims"))
    from innerloop.victims import load_victim

    victims = {}
    for name in ("mnist", "cifar10"):
        path = Path(os.environ["INNERLOOP_VICTIMS"]) / name
        if not (path / "victim.pt").is_file():
            raise UserError(f"no victim at {path}/victim.pt: run `innerloop victim train --dataset {name} --out {path}` "
                            "or set INNERLOOP_VICTIMS to the folder holding mnist/ and cifar10/")
        victims[name] = load_victim(path)[1]
    device = default_device(device)
    trained, info = train_table(rows_for(budget, device), out, jobs, only, "mnist-lft-fo", device)
    table = expand(trained, THRESHOLD)
    steps = [s for s in PAIRED_STEPS if s <= BUDGETS[budget]["steps"]] or [BUDGETS[budget]["steps"]]
    pairs = paired(trained, lambda r: {"train": r["setting"]["train"], "oracle": r["setting"]["oracle"].upper()},
                   COLUMNS, steps=steps)
    pairs.sort(key=lambda p: (list(TRAIN).index(p["setting"]["train"]), p["setting"]["oracle"]))  # not finish order
    report = {"name": "lft-uap", "budget": budget, **info, "threshold": THRESHOLD,
              "victims": {k: {"test_accuracy": v["test_accuracy"]} for k, v in victims.items()}, "rows": table,
              "paired": pairs}
    if not writes_report():  # another process of a torchrun job: it trained its share; rank 0 writes the report
        return report
    out_path = Path(out)
    (out_path / "results.json").write_text(json.dumps(report, indent=1))
    plot(table, out_path / "figure2.png")
    write_markdown(out_path, table, budget, info, report["victims"], pairs, rescored_lines(trained))
    print(f"wrote {out_path / 'results.md'}, results.json and figure2.png")
    return report
