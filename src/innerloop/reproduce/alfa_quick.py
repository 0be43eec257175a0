"""``innerloop reproduce alfa-sinusoid --budget quick``: the quick start's table — MAML vs ALFA+MAML in about two
minutes on two CPU cores, with honest numbers and no paper column.

One cell of ALFA Table 8's grid (MLP 2x40, k = 10 support points, 5 second-order inner steps at 0.01), meta-trained
for :data:`QUICK` ``iterations`` — a short run, not the paper's protocol — and scored on the same 600 fixed test
tasks as every other budget. The protocol (5 steps, meta-learning rate, iteration count, meta-gradient clipping) was
chosen on *validation* tasks (evaluation seed 7, never the test seed 2020): see :data:`SELECTION`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from innerloop.evaluate import paired_difference

#: the quick protocol: both methods, same everything
QUICK = {"network": "2x40", "shots": 10, "steps": 5, "lr": 0.01, "iterations": 1500, "meta_batch": 25,
         "meta_lr": {"MAML": 0.003, "ALFA+MAML": 0.001}, "clip_grad": 1.0, "eval_tasks": 600}
#: how it was chosen: each method's meta-learning rate from {1e-3, 3e-3}, by its MSE after 1,500 iterations on 200
#: validation tasks (evaluation seed 7, never the test seed 2020); every meta-gradient entry clipped to [-1, 1]
#: (ALFA+MAML's 5-step rows can blow up in their first iterations without it: see the paper-budget table)
VALIDATION = {"MAML": {0.001: 0.637, 0.003: 0.383}, "ALFA+MAML": {0.001: 0.297, 0.003: 0.377}}
SELECTION = ("each method's meta-learning rate chosen from {1e-3, 3e-3} by its MSE after 1,500 iterations on 200 "
             "validation tasks (evaluation seed 7, not the test tasks): MAML 0.637 / 0.383, ALFA+MAML 0.297 / 0.377; "
             "meta-gradient entries clipped to [-1, 1] (ALFA+MAML's 5-step rows can blow up in their first iterations "
             "without it: see the paper-budget table)")


def quick_rows(device: str):
    """The two rows: MAML and ALFA+MAML under :data:`QUICK`."""
    from innerloop.reproduce.runner import Row

    q = QUICK
    rows = []
    for method, config in (("MAML", "sinusoid/maml"), ("ALFA+MAML", "sinusoid/alfa-maml")):
        overrides = [
            "model.hidden=[40, 40]", f"task.shots={q['shots']}", f"task.query={q['shots']}",
            f"inner.steps={q['steps']}", f"rule.lr={q['lr']}", f"train.iterations={q['iterations']}",
            f"train.meta_batch={q['meta_batch']}", f"train.meta_lr={q['meta_lr'][method]}",
            f"train.clip_grad={q['clip_grad']}",
            f"train.checkpoint_every={q['iterations'] // 3}", "train.log_every=100", f"eval.tasks={q['eval_tasks']}",
            f"train.device=\"{device}\"",
        ]
        rows.append(Row(id=f"quick-{method.lower().replace('+', '-')}-2x40-k10", method=method,
                        setting={"network": q["network"], "shots": q["shots"], "steps": q["steps"]},
                        config=config, overrides=overrides, paper=None, extra={"table": "quick"}))
    return rows


def summary(results: list[dict[str, Any]]) -> list[str]:
    """Plain-language lines: who won, by how much (paired over the same test tasks), in what time, what next."""
    by = {r["method"]: r for r in results}
    if not {"MAML", "ALFA+MAML"} <= set(by):
        return ["Not finished yet: run the same command again to resume."]
    maml, alfa = by["MAML"], by["ALFA+MAML"]
    lines = []
    if "values" in maml and "values" in alfa:
        d = paired_difference(alfa["values"], maml["values"])
        if d["mean"] + d["ci95"] < 0:
            verdict = (f"ALFA+MAML adapts better: its test MSE is lower by {-d['mean']:.3f} ± {d['ci95']:.3f} per task "
                       f"({-100 * d['mean'] / maml['mean']:.0f}% of MAML's), paired over the same {d['tasks']} tasks")
        elif d["mean"] - d["ci95"] > 0:
            verdict = (f"MAML adapts better here: ALFA+MAML's test MSE is higher by {d['mean']:.3f} ± {d['ci95']:.3f} "
                       f"per task, paired over the same {d['tasks']} tasks")
        else:
            verdict = (f"no clear winner: the paired difference (ALFA+MAML - MAML) is {d['mean']:.3f} ± {d['ci95']:.3f} "
                       f"over the same {d['tasks']} tasks")
        lines.append(f"Result: {verdict}.")
    minutes = (maml.get("train_wall_s", 0) + alfa.get("train_wall_s", 0)) / 60
    lines += [
        f"Both meta-learners were trained for {QUICK['iterations']} iterations ({minutes:.1f} min of training in all), "
        f"then each adapted a fresh sine wave from {QUICK['shots']} points with {QUICK['steps']} inner steps: MAML with "
        "one learned initialisation and a fixed rate, ALFA+MAML with per-step, per-layer rates and weight decays that "
        "its meta-network generates from the current weights and gradients.",
        "This is a short run, not the paper's protocol, so there is no paper column: `--budget paper` reproduces "
        "ALFA Table 8 (hours; committed numbers in results/alfa-sinusoid/results.md).",
        "Next: `innerloop train sinusoid/alfa-maml --out runs/a` (your own run), `innerloop plot RUN` (the generated "
        "rates), README 'Python API' (load a run, adapt on your own data).",
    ]
    return lines


def write_markdown(out: Path, results: list[dict[str, Any]], info: dict[str, Any]) -> list[str]:
    """``results.md`` for the quick budget; returns the lines printed on the terminal (table and summary)."""
    q = QUICK
    table = ["| method | test MSE (mean ± 95% CI) | meta-training |", "|---|---|---|"]
    for method in ("MAML", "ALFA+MAML"):
        r = next((r for r in results if r["method"] == method), None)
        table.append(f"| {method} | " + ("— (not finished)" if r is None else
                                         f"{r['mean']:.3f} ± {r['ci95']:.3f} | {r['train_wall_s']:.0f} s") +
                     (" | — |" if r is None else " |"))
    lines = [
        "# Quick start — MAML vs ALFA+MAML on sinusoid regression",
        "",
        "Produced by `innerloop reproduce alfa-sinusoid --budget quick --out DIR`. Hardware: "
        + ", ".join(f"{k} {v}" for k, v in info["hardware"].items()) + ".",
        "",
        f"MLP {q['network']}, k = {q['shots']} support points, {q['steps']} second-order inner steps at {q['lr']}, "
        f"{q['iterations']} meta-iterations of {q['meta_batch']} tasks (Adam; meta-learning rate "
        f"{q['meta_lr']['MAML']} for MAML, {q['meta_lr']['ALFA+MAML']} for ALFA+MAML: {SELECTION}). Test: the "
        f"{q['eval_tasks']} fixed tasks of every budget, MSE on 100 points each.",
        "",
        *table,
        "",
        *summary(results),
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))
    return table + [""] + summary(results)
