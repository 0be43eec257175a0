"""ALFA Table 8: sinusoid regression, MAML vs ALFA+MAML (and ALFA+Random), 2x40 and 3x80, k = 5/10/20.

The paper omits its sinusoid protocol (inner steps, inner rate, iterations). ``PROTOCOL`` is the one
we calibrated so that our MAML lands inside the published MAML 95% intervals (see
``results/alfa-sinusoid/results.md``); ``FIVE_STEP`` is the spec's inferred protocol (5 steps), the
second table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from innerloop.errors import UserError
from innerloop.reproduce.runner import writes_report, Row, default_device, diverged_rows, train_table

PAPER = {  # ALFA Table 8, MSE over 100 points, mean (+- 95% CI in comments)
    ("MAML", "2x40"): {5: 1.24, 10: 0.75, 20: 0.49},  # +-0.21 / 0.15 / 0.11
    ("ALFA+MAML", "2x40"): {5: 0.92, 10: 0.62, 20: 0.34},  # +-0.19 / 0.16 / 0.07
    ("MAML", "3x80"): {5: 0.84, 10: 0.56, 20: 0.33},  # +-0.14 / 0.09 / 0.06
    ("ALFA+MAML", "3x80"): {5: 0.70, 10: 0.51, 20: 0.25},  # +-0.15 / 0.10 / 0.06
}
PAPER_CI = {
    ("MAML", "2x40"): {5: 0.21, 10: 0.15, 20: 0.11},
    ("ALFA+MAML", "2x40"): {5: 0.19, 10: 0.16, 20: 0.07},
    ("MAML", "3x80"): {5: 0.14, 10: 0.09, 20: 0.06},
    ("ALFA+MAML", "3x80"): {5: 0.15, 10: 0.10, 20: 0.06},
}
NETWORKS = {"2x40": [40, 40], "3x80": [80, 80, 80]}
SHOTS = (5, 10, 20)
METHODS = {  # method -> (shipped config, extra overrides)
    "MAML": ("sinusoid/maml", []),
    "ALFA+MAML": ("sinusoid/alfa-maml", []),
    "ALFA+Random": ("sinusoid/alfa-random", []),
    # issue 24: the same generator, started as LSLR with bounded multipliers (rule.form = robust), no per-row overrides
    "robust ALFA+MAML": ("sinusoid/alfa-maml", ['rule.form="robust"']),
}

#: calibrated protocol (main table): the official MAML code's sinusoid command (cbfinn/maml README:
#: 70,000 iterations, meta-batch 25, one inner step at its default ``update_lr`` = 1e-3)
PROTOCOL = {"steps": 1, "lr": 0.001, "iterations": 70000, "meta_batch": 25, "order": "second"}
#: the spec's inferred protocol (second table). 20k iterations, not 70k: five second-order steps cost
#: about 5x a one-step iteration (3x80 at ~450-750 tasks/s on one core); k = 5 is still improving at 20k
#: (2x40 MAML: 1.72 after 10k, 1.20 after 20k), the other cells have flattened (see metrics.jsonl)
FIVE_STEP = {"steps": 5, "lr": 0.01, "iterations": 20000, "meta_batch": 25, "order": "second"}

#: rows whose protocol had to change, with the reason (shown in results.md)
ROW_OVERRIDES = {
    "5step-alfa-maml-2x40-k5": (
        ["train.clip_grad=1.0"],
        "blew up in its first iterations under the plain protocol (first logged meta-loss 2e16) and never recovered "
        "(test MSE 3.51, run kept in `diverged/`); rerun with every meta-gradient entry clipped to [-1, 1]",
    ),
    "5step-alfa-maml-2x40-k10": (
        ["train.clip_grad=1.0"],
        "blew up in its first iterations under the plain protocol (first logged meta-loss 1.9e4; test MSE 0.62, run "
        "kept in `diverged/`); rerun with every meta-gradient entry clipped to [-1, 1]",
    ),
    "5step-alfa-maml-3x80-k10": (
        ["train.clip_grad=1.0"],
        "diverged at iteration ~15k under the plain protocol (generated rates blew up; test MSE 3932, run kept in "
        "`diverged/`); rerun with every meta-gradient entry clipped to [-1, 1]",
    ),
}

BUDGETS = {
    "quick": {"iterations": None, "eval_tasks": 600},  # two rows, ~2 min: innerloop.reproduce.alfa_quick
    "smoke": {"iterations": 60, "eval_tasks": 100},
    "paper": {"iterations": None, "eval_tasks": 600},
}


def _row_id(table: str, method: str, net: str, k: int) -> str:
    """``5step-alfa-maml-2x40-k5``; a method's prefix word moves to the end (``...-alfa-maml-robust-...``)."""
    words = method.lower().replace("+", "-").split(" ")
    return f"{table}-{'-'.join(words[1:] + words[:1])}-{net}-k{k}"


def rows_for(budget: str, device: str) -> list[Row]:
    if budget == "quick":
        from innerloop.reproduce.alfa_quick import quick_rows

        return quick_rows(device)
    b = BUDGETS[budget]
    rows = []
    tables = [("main", PROTOCOL, ("MAML", "ALFA+MAML", "ALFA+Random", "robust ALFA+MAML")),
              ("5step", FIVE_STEP, ("MAML", "ALFA+MAML", "robust ALFA+MAML"))]
    for table, proto, methods in tables:
        for method in methods:
            for net, hidden in NETWORKS.items():
                for k in SHOTS:
                    cfg, extra = METHODS[method]
                    iters = b["iterations"] or proto["iterations"]
                    overrides = [
                        f"model.hidden={hidden}", f"task.shots={k}", f"task.query={k}",
                        f"inner.steps={proto['steps']}", f"rule.lr={proto['lr']}", f"inner.order=\"{proto['order']}\"",
                        f"train.iterations={iters}", f"train.meta_batch={proto['meta_batch']}",
                        f"train.checkpoint_every={min(2000, max(iters, 1))}", f"train.log_every={min(500, max(iters, 1))}",
                        f"eval.tasks={b['eval_tasks']}", f"train.device=\"{device}\"", *extra,
                    ]
                    row_id = _row_id(table, method, net, k)
                    if budget == "paper" and row_id in ROW_OVERRIDES:
                        overrides += ROW_OVERRIDES[row_id][0]
                    rows.append(Row(
                        id=row_id,
                        method=method,
                        setting={"network": net, "shots": k, "steps": proto["steps"]},
                        config=cfg, overrides=overrides,
                        paper=PAPER.get((method, net), {}).get(k) if table == "main" else None,
                        extra={"table": table, "paper_ci95": PAPER_CI.get((method, net), {}).get(k) if table == "main" else None},
                    ))
    return rows


def _fmt(r: dict[str, Any] | None) -> str:
    return "—" if r is None else f"{r['mean']:.3f} ± {r['ci95']:.3f}"


def write_markdown(out: Path, results: list[dict[str, Any]], budget: str, info: dict[str, Any]) -> None:
    diverged = diverged_rows(out)
    by = {(r["table"], r["method"], r["setting"]["network"], r["setting"]["shots"]): r for r in results}
    lines = [
        "# ALFA Table 8 — sinusoid regression (MSE over 100 query points, mean ± 95% CI)",
        "",
        f"Budget `{budget}`; produced by `innerloop reproduce alfa-sinusoid --budget {budget} --out DIR`.",
        "Hardware: " + ", ".join(f"{k} {v}" for k, v in info["hardware"].items())
        + f". Training wall time of the finished rows: {info['train_wall_s'] / 60:.1f} min. "
        "A row shown as — has not finished yet: rerun the same command to resume it.",
        "",
        "## Calibrated protocol (main table)",
        "",
        "The paper does not give its sinusoid protocol. We use the official MAML code's sinusoid command "
        "(`cbfinn/maml` README: 70,000 iterations, meta-batch 25, one inner step at its default `update_lr` = 1e-3), "
        "which puts our MAML inside (or at the edge of) the published MAML 95% intervals; 5 steps at 0.01 gives "
        "MAML MSEs far below the paper's (second table). Calibration runs (2x40, 600 test tasks): 1 step at 0.01 "
        "for 70k iterations gave 0.94 / 0.55 / 0.33 (below every interval); 1 step at 1e-3 gave 1.35 / 1.10 / 0.76 "
        "after 10k iterations and the table's values after 70k.",
        "",
        f"Inner steps {PROTOCOL['steps']} at rate {PROTOCOL['lr']} (train and test), {PROTOCOL['order']} order, "
        f"meta-batch {PROTOCOL['meta_batch']}, Adam 1e-3, {BUDGETS[budget]['iterations'] or PROTOCOL['iterations']} "
        "meta-iterations, query set = k points during training; test: "
        f"{BUDGETS[budget]['eval_tasks']} fixed tasks (the same for every "
        "method), adapted on k points, MSE on 100 points. Tasks: A in [0.1, 5], w in [0.8, 1.2], phase in [0, pi], "
        "x in [-5, 5]. ALFA: 3-layer generator, alpha0 = 0.01, beta0 = 5e-6 (authors' code form).",
        "",
        "| network | method | k = 5 | k = 10 | k = 20 |",
        "|---|---|---|---|---|",
    ]
    for net in NETWORKS:
        for method in ("MAML", "ALFA+MAML", "ALFA+Random", "robust ALFA+MAML"):
            if method == "robust ALFA+MAML" and not any(("main", method, net, k) in by for k in SHOTS):
                continue  # not run yet (issue 24): no row of dashes
            cells = []
            for k in SHOTS:
                r = by.get(("main", method, net, k))
                paper = PAPER.get((method, net), {}).get(k)
                ci = PAPER_CI.get((method, net), {}).get(k)
                cells.append(_fmt(r) + (f" (paper {paper:.2f} ± {ci:.2f})" if paper is not None else ""))
            lines.append(f"| {net} | {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Five inner steps (the spec's inferred protocol)",
        "",
        f"Same as above with {FIVE_STEP['steps']} inner steps at rate {FIVE_STEP['lr']} for training and test, "
        f"{FIVE_STEP['iterations']} meta-iterations (five second-order steps cost about 5x a one-step iteration).",
        "",
        "| network | method | k = 5 | k = 10 | k = 20 |",
        "|---|---|---|---|---|",
    ]
    for net in NETWORKS:
        for method in ("MAML", "ALFA+MAML", "robust ALFA+MAML"):
            cells = ["diverged" if _row_id("5step", method, net, k) in diverged else _fmt(by.get(("5step", method, net, k)))
                     for k in SHOTS]
            lines.append(f"| {net} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "*robust ALFA+MAML* (issue 24): the same generator and post-multipliers with `rule.form = \"robust\"`: "
              "the generator's last layer starts at zero, so training starts from the learned-rate baseline (LSLR) "
              "exactly; generated multipliers are bounded to [1/2, 2] (`2 ** tanh(g)`), post-multipliers in log space and decay is kept in [0, 1]. "
              "Plain protocol, no per-row overrides. The *ALFA+MAML* rows are the authors' form."]
    if budget == "paper":
        lines += [""] + [f"* `{rid}`: {why}." for rid, (_, why) in ROW_OVERRIDES.items()]
        lines += [f"* `{rid}`: diverged again with clipping: {d['error'].split(';')[0]} (`runs/{rid}/diverged.json`)."
                  for rid, d in diverged.items()]
    lines += ["", "Per-row iterations, wall time and executor are in `results.json`.", ""]
    (out / "results.md").write_text("\n".join(lines))


def reproduce(budget: str, out: str, jobs: int = 1, device: str | None = None, only: str | None = None) -> dict[str, Any]:
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r}; use one of {', '.join(BUDGETS)}")
    device = default_device(device)
    example = "quick-maml-2x40-k10" if budget == "quick" else "main-maml-2x40-k5"
    all_rows, info = train_table(rows_for(budget, device), out, jobs, only, example, device)
    if budget == "quick":
        from innerloop.reproduce.alfa_quick import QUICK

        protocol: dict[str, Any] = {"quick": QUICK}
    else:
        protocol = {"main": PROTOCOL, "5step": FIVE_STEP}
    report = {"name": "alfa-sinusoid", "budget": budget, "protocol": protocol, **info, "rows": all_rows}
    if not writes_report():  # another process of a torchrun job: it trained its share; rank 0 writes the report
        return report
    out_path = Path(out)
    (out_path / "results.json").write_text(json.dumps(report, indent=1))
    if budget == "quick":
        from innerloop.reproduce.alfa_quick import write_markdown as write_quick

        print("\n".join(write_quick(out_path, all_rows, info)))
    else:
        write_markdown(out_path, all_rows, budget, info)
    print(f"wrote {out_path / 'results.md'} and {out_path / 'results.json'}")
    return report
