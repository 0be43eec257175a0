"""Omniglot few-shot classification: MAML, ALFA+MAML, ALFA+Random and MAML+L2F on 5-way 1-shot,
5-way 5-shot and 20-way 1-shot (Vinyals split, 600 fixed test episodes, accuracy mean and 95% CI).

Published numbers exist only for MAML (MAML paper Table 1: 98.7 / 99.9 / 95.8); ALFA and L2F report no
Omniglot results. ``PROTOCOLS`` holds each budget's settings; the ``cpu`` budget's departures from
the paper protocol are listed in ``results.md`` (and in the README).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from innerloop.errors import UserError
from innerloop.reproduce.runner import writes_report, Row, default_device, train_table
PAPER = {("MAML", "5w1s"): 98.7, ("MAML", "5w5s"): 99.9, ("MAML", "20w1s"): 95.8}  # MAML Table 1 (Omniglot)
PAPER_CI = {("MAML", "5w1s"): 0.4, ("MAML", "5w5s"): 0.1, ("MAML", "20w1s"): 0.3}
SETTINGS = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1)}
METHODS = {"MAML": "omniglot/maml", "ALFA+MAML": "omniglot/alfa-maml", "ALFA+Random": "omniglot/alfa-random",
           "MAML+L2F": "omniglot/maml-l2f", "robust ALFA+MAML": "omniglot/alfa-maml",
           "shared ALFA+MAML": "omniglot/alfa-maml", "shared-relative ALFA+MAML": "omniglot/alfa-maml", "MeTAL": "omniglot/metal", "MeTAL+ALFA": "omniglot/metal-alfa"}
#: a method's overrides on top of its config: robust ALFA (issue 24) starts as LSLR, bounded multipliers, and one
#: post-multiplier per layer for every step (defined past the trained steps)
METHOD_OVERRIDES = {"robust ALFA+MAML": ['rule.form="robust"', 'rule.schedule="state"'],
                    # transferable ALFA: one generator for every tensor (rules/alfa_shared.py); its run is the source
                    # of benchmarks/alfa_transfer.py (the same rule applied unchanged to other architectures)
                    "shared ALFA+MAML": ['rule.kind="alfa_shared"'],
                    # the same with the generator's outputs centred over the tensors (the shared row's generator
                    # saturated at 1/B on every tensor: a learned scalar rate)
                    "shared-relative ALFA+MAML": ['rule.kind="alfa_shared"', "rule.relative=true"],
                    # MeTAL's learned inner loss learns through the inner gradients: second order in every budget
                    "MeTAL": ['inner.order="second"'], "MeTAL+ALFA": ['inner.order="second"']}

#: per budget and setting: filters, meta-batch, iterations, inner steps and rate (training), test steps,
#: order, training queries per class. ``paper`` is the MAML paper's Omniglot protocol (5-way: 1 step at 0.4,
#: meta-batch 32; 20-way: 5 steps at 0.1, meta-batch 16; 64 filters; 60k iterations; second order; K query
#: images per class in training, as in the authors' code, whose test runs 10 inner steps).
PROTOCOLS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {s: {"filters": 8, "meta_batch": 2, "iterations": 10, "steps": 1, "lr": 0.4, "eval_steps": 1,
                  "order": "first", "query": 1, "eval_tasks": 40} for s in SETTINGS},
    "cpu": {
        "5w1s": {"filters": 32, "meta_batch": 16, "iterations": 8000, "steps": 1, "lr": 0.4, "eval_steps": 1,
                 "order": "second", "query": 1, "eval_tasks": 600},
        "5w5s": {"filters": 32, "meta_batch": 8, "iterations": 2000, "steps": 1, "lr": 0.4, "eval_steps": 1,
                 "order": "second", "query": 5, "eval_tasks": 600},
        "20w1s": {"filters": 32, "meta_batch": 8, "iterations": 1000, "steps": 1, "lr": 0.4, "eval_steps": 1,
                  "order": "second", "query": 1, "eval_tasks": 600},
    },
    "paper": {
        "5w1s": {"filters": 64, "meta_batch": 32, "iterations": 60000, "steps": 1, "lr": 0.4, "eval_steps": 10,
                 "order": "second", "query": 1, "eval_tasks": 600},
        "5w5s": {"filters": 64, "meta_batch": 32, "iterations": 60000, "steps": 1, "lr": 0.4, "eval_steps": 10,
                 "order": "second", "query": 5, "eval_tasks": 600},
        "20w1s": {"filters": 64, "meta_batch": 16, "iterations": 60000, "steps": 5, "lr": 0.1, "eval_steps": 10,
                  "order": "second", "query": 1, "eval_tasks": 600},
    },
}


#: every row is also scored after this many test steps (``evals``), to show what more steps than were
#: trained do to each method (MAML's code tests with 10; ALFA's generated per-step hyperparameters exist
#: only for the trained steps, beyond which the rule repeats the last one's post-multipliers)
LONGER_TEST_STEPS = 5


def eval_steps(method: str, protocol: dict[str, Any]) -> int:
    """Test steps of a row: the protocol's, except ALFA and MeTAL rows, which test with the steps they were trained
    for (ALFA and MeTAL train and test with the same S; their per-step networks past S are not defined)."""
    return protocol["steps"] if method.startswith(("ALFA", "MeTAL")) else protocol["eval_steps"]


def row_id(setting: str, method: str) -> str:
    """``5w1s-alfa-maml``; a method's prefix word moves to the end (``5w1s-alfa-maml-robust``)."""
    words = method.lower().replace("+", "-").split(" ")
    return f"{setting}-{'-'.join(words[1:] + words[:1])}"


def rows_for(budget: str, device: str) -> list[Row]:
    rows = []
    for setting, (ways, shots) in SETTINGS.items():
        p = PROTOCOLS[budget][setting]
        for method, cfg in METHODS.items():
            steps, test_steps = p["steps"], eval_steps(method, p)
            iters = p["iterations"]
            overrides = [
                f"task.ways={ways}", f"task.shots={shots}", f"task.query={p['query']}", f"model.filters={p['filters']}",
                f"inner.steps={steps}", f"eval.steps={test_steps}", f"rule.lr={p['lr']}", f"inner.order=\"{p['order']}\"",
                f"train.iterations={iters}", f"train.meta_batch={p['meta_batch']}",
                f"train.checkpoint_every={min(100, iters)}", f"train.log_every={min(50, iters)}",
                f"eval.tasks={p['eval_tasks']}", f"train.device=\"{device}\"",
                # pinned: omniglot/maml.toml's own defaults are tuned for time to accuracy on a CPU
                "train.meta_lr=0.001", "train.workers=1", *METHOD_OVERRIDES.get(method, []),
            ]
            rows.append(Row(
                id=row_id(setting, method), method=method,
                setting={"ways": ways, "shots": shots, "steps": steps, "eval_steps": test_steps, "filters": p["filters"]},
                config=cfg, overrides=overrides, paper=PAPER.get((method, setting)),
                extra={"paper_ci95": PAPER_CI.get((method, setting)), "protocol": p},
                evals=None if test_steps == LONGER_TEST_STEPS else {"longer": {"steps": LONGER_TEST_STEPS}},
            ))
    return rows


def _fmt(r: dict[str, Any] | None) -> str:
    return "—" if r is None else f"{r['mean']:.2f} ± {r['ci95']:.2f}"


def _at_steps(r: dict[str, Any] | None, steps: int) -> dict[str, Any] | None:
    """A row's result after ``steps`` test steps: its headline, or its extra evaluation at that count."""
    if r is None:
        return None
    if r["setting"]["eval_steps"] == steps:
        return r
    longer = r.get("evals", {}).get("longer")
    return longer if longer is not None and longer["steps"] == steps else None


def write_markdown(out: Path, results: list[dict[str, Any]], budget: str, info: dict[str, Any]) -> None:
    by = {(r["method"], f"{r['setting']['ways']}w{r['setting']['shots']}s"): r for r in results}
    prot = PROTOCOLS[budget]
    lines = [
        "# Omniglot few-shot classification (accuracy %, mean ± 95% CI over fixed test episodes)",
        "",
        f"Budget `{budget}`; produced by `innerloop reproduce omniglot --budget {budget} --out DIR` "
        "(data: `--data DIR` or `$INNERLOOP_DATA`, the folder holding `omniglot/`).",
        "Hardware: " + ", ".join(f"{k} {v}" for k, v in info["hardware"].items())
        + f". Training wall time of the finished rows: {info['train_wall_s'] / 60:.1f} min. "
        "A row shown as — has not finished yet: rerun the same command to resume it.",
        "",
        "Data: Vinyals split (1200 training characters = `trainval`, 423 test characters), 90/180/270-degree "
        "rotations as extra classes, inverted, 28x28. Backbone: 4-CONV (conv3x3 -> transductive batch norm -> ReLU "
        "-> max-pool 2; MAML's Omniglot net uses strided convs instead of max-pool), batch norm affine "
        "meta-learned, not adapted. Test: 15 query images per class, the same episodes for every method.",
        "",
        "| setting | filters | meta-batch | iterations | inner steps x rate (train) | test steps | order | train queries / class | test episodes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s, p in prot.items():
        lines.append(f"| {s} | {p['filters']} | {p['meta_batch']} | {p['iterations']} | {p['steps']} x {p['lr']} | "
                     f"{p['eval_steps']} | {p['order']} | {p['query']} | {p['eval_tasks']} |")
    if budget == "cpu":
        lines += ["", "Changes from the paper protocol (MAML section 5.2) to fit about 4 hours on 2 CPU cores: "
                  "32 filters instead of 64, fewer iterations and smaller meta-batches (table above), one inner "
                  "step at 0.4 for 20-way (the paper: 5 steps at 0.1), and one test step, the trained number, for "
                  "every method (the authors' code: 10)."]
    lines += ["", "ALFA rows always test with the steps they were trained for: ALFA trains and tests with the same "
              "number of steps, and its per-step post-multipliers do not exist beyond them. The second table "
              f"scores every trained network after {LONGER_TEST_STEPS} test steps (ALFA repeating its last trained "
              "step's post-multipliers), to show what that does.",
              "", "| method | 5-way 1-shot | 5-way 5-shot | 20-way 1-shot |", "|---|---|---|---|"]
    shown = [m for m in METHODS if m in {r["method"] for r in results} or m not in METHOD_OVERRIDES]
    for method in shown:
        cells = []
        for s in SETTINGS:
            paper, ci = PAPER.get((method, s)), PAPER_CI.get((method, s))
            cells.append(_fmt(by.get((method, s))) + (f" (paper {paper} ± {ci})" if paper is not None else ""))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", f"After {LONGER_TEST_STEPS} test steps (same networks, same episodes):", "",
              "| method | 5-way 1-shot | 5-way 5-shot | 20-way 1-shot |", "|---|---|---|---|"]
    for method in shown:
        cells = [_fmt(_at_steps(by.get((method, s)), LONGER_TEST_STEPS)) for s in SETTINGS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if "shared ALFA+MAML" in shown:
        lines += ["", "*shared ALFA+MAML* (issue 24): `rule.kind = \"alfa_shared\"`, one generator for every tensor fed "
                  "per-tensor statistics, so its meta-parameters fit any architecture (`benchmarks/alfa_transfer.py` "
                  "applies this row's rule to other models)."]
    if "shared-relative ALFA+MAML" in shown:
        lines += ["", "*shared-relative ALFA+MAML* (issue 24): the same with `rule.relative = true`: the generator's "
                  "outputs are centred over the model's tensors, so it only shares the rate and decay out between "
                  "tensors and the learned base rate sets their scale (the shared row's generator ended at its lower "
                  "bound on every tensor, step and task)."]
    if "MeTAL" in shown or "MeTAL+ALFA" in shown:
        lines += ["", "*MeTAL*, *MeTAL+ALFA* (issue 24): MAML / ALFA+MAML with MeTAL's learned inner loss "
                  "(`objective.inner_loss = \"metal\"`, `objectives/learned_loss.py`): the inner loop descends the "
                  "task loss plus a meta-learned loss of the task state and, transductively, of the unlabelled query "
                  "outputs; its last layers start at zero, so training starts from the plain loss. Second order in "
                  "every budget (the learned loss learns through the inner gradients)."]
    if "robust ALFA+MAML" in shown:
        lines += ["", "*robust ALFA+MAML* (issue 24): `rule.form = \"robust\"` (the generator's last layer starts at zero, "
                  "so training starts from LSLR exactly; generated multipliers within [1/2, 2], post-multipliers in log space; decay in [0, 1]) and "
                  "`rule.schedule = \"state\"` (one post-multiplier per layer for every step, so more test steps than "
                  "trained are defined). Same protocol as ALFA+MAML otherwise."]
    lines += ["", "Paper values: MAML (Finn et al. 2017, Table 1). ALFA and L2F publish no Omniglot numbers.",
              "Per-row iterations, wall time and executor are in `results.json`.", ""]
    (out / "results.md").write_text("\n".join(lines))


def reproduce(budget: str, out: str, jobs: int = 1, device: str | None = None, only: str | None = None) -> dict[str, Any]:
    if budget not in PROTOCOLS:
        raise UserError(f"unknown budget {budget!r} for omniglot; use one of {', '.join(PROTOCOLS)}")
    device = default_device(device)
    all_rows, info = train_table(rows_for(budget, device), out, jobs, only, "5w1s-maml", device)
    report = {"name": "omniglot", "budget": budget, "protocol": PROTOCOLS[budget], **info, "rows": all_rows}
    if not writes_report():  # another process of a torchrun job: it trained its share; rank 0 writes the report
        return report
    out_path = Path(out)
    (out_path / "results.json").write_text(json.dumps(report, indent=1))
    write_markdown(out_path, all_rows, budget, info)
    print(f"wrote {out_path / 'results.md'} and {out_path / 'results.json'}")
    return report
