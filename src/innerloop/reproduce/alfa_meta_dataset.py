"""ALFA Table 3: fo-MAML and fo-Proto-MAML, each with and without ALFA, on Meta-Dataset.

Trained on ILSVRC-2012 only, tested on the ten Meta-Dataset sources with variable-way variable-shot episodes (600
fixed episodes per source; accuracy mean and 95% CI). The rows are the shipped configs ``meta-dataset/fo-maml``,
``fo-maml-alfa``, ``fo-proto-maml`` and ``fo-proto-maml-alfa`` (Meta-Dataset's reference hyperparameters; their
deviations are in the configs' headers). The records (hundreds of GB, converted by Meta-Dataset's own tools) are
read from ``--data`` / ``$INNERLOOP_RECORDS``; without them the command stops with the one-line instruction.
The ``paper`` budget is the reference protocol (days per row on a GPU); ``smoke`` runs each row for 2 updates and
5 episodes per source (a pipeline check).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from innerloop.errors import UserError
from innerloop.evaluate import mean_ci95
from innerloop.reproduce.runner import Row, default_device, train_table, writes_report

#: method -> shipped config
METHODS = {"fo-MAML": "meta-dataset/fo-maml", "fo-MAML+ALFA": "meta-dataset/fo-maml-alfa",
           "fo-Proto-MAML": "meta-dataset/fo-proto-maml", "fo-Proto-MAML+ALFA": "meta-dataset/fo-proto-maml-alfa"}
SOURCES = ["ilsvrc_2012", "omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "vgg_flower",
           "traffic_sign", "mscoco"]
#: ALFA Table 3 (accuracy %, ± 95% CI; spec algorithms.md); the fo-MAML and fo-Proto-MAML cells are Meta-Dataset's
#: own numbers
PAPER = {
    "fo-MAML": [(45.51, 1.11), (55.55, 1.54), (56.24, 1.11), (63.61, 1.06), (68.04, 0.81), (43.96, 1.29),
                (32.10, 1.10), (81.74, 0.83), (50.93, 1.51), (35.30, 1.23)],
    "fo-MAML+ALFA": [(51.09, 1.17), (67.89, 1.43), (66.34, 1.17), (67.67, 1.06), (65.34, 0.95), (60.53, 1.13),
                     (37.41, 1.00), (84.28, 0.97), (60.86, 1.43), (40.05, 1.14)],
    "fo-Proto-MAML": [(49.53, 1.05), (63.37, 1.33), (55.95, 0.99), (68.66, 0.96), (66.49, 0.83), (51.52, 1.00),
                      (39.96, 1.14), (87.15, 0.69), (48.83, 1.09), (43.74, 1.12)],
    "fo-Proto-MAML+ALFA": [(52.80, 1.11), (61.87, 1.51), (63.43, 1.10), (69.75, 1.05), (70.78, 0.88), (59.17, 1.16),
                           (41.49, 1.17), (85.96, 0.77), (60.78, 1.29), (48.11, 1.14)],
}
BUDGETS = {"smoke": {"iterations": 2, "eval_tasks": 5}, "paper": {"iterations": None, "eval_tasks": 600}}
CONVERT = ("Meta-Dataset records are needed: convert the sources with Meta-Dataset's dataset_conversion tools (or "
           "`innerloop data to-records` for omniglot/mnist/cifar10) and pass --data DIR (the folder holding "
           "ilsvrc_2012/, omniglot/, ...) or set INNERLOOP_RECORDS")


def records_folder(sources: list[str]) -> Path:
    """``$INNERLOOP_RECORDS`` (``--data`` sets it) holding every source's ``dataset_spec.json``; else the one-line
    instruction."""
    root = os.environ.get("INNERLOOP_RECORDS", "")
    missing = [s for s in sources if not root or not (Path(root) / s / "dataset_spec.json").is_file()]
    if missing:
        where = f" ({root} lacks {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''})" if root else ""
        raise UserError(CONVERT + where)
    return Path(root)


def method_id(method: str) -> str:
    return method.lower().replace("+", "-")


def eval_rows(method_rows: dict[str, tuple[str, list[str], dict[str, Any]]], sources: list[str],
              eval_tasks: int) -> list[Row]:
    """One row per method: trained once, evaluated on each source's fixed test episodes (``evals``)."""
    rows = []
    for method, (config, overrides, setting) in method_rows.items():
        evals = {s: {"sources": [s], "n_tasks": eval_tasks} for s in sources}
        rows.append(Row(id=method_id(method), method=method, setting=setting, config=config,
                        overrides=[*overrides, f"eval.tasks={eval_tasks}"], paper=None, evals=evals,
                        main=sources[0]))
    return rows


def rows_for(budget: str, device: str) -> list[Row]:
    b = BUDGETS[budget]
    base = [f'train.device="{device}"'] + ([f"train.iterations={b['iterations']}", "train.checkpoint_every=1",
                                            "train.log_every=1"] if b["iterations"] else [])
    return eval_rows({m: (c, base, {"train": "ilsvrc_2012"}) for m, c in METHODS.items()}, SOURCES, b["eval_tasks"])


def by_source(result: dict[str, Any] | None, source: str) -> dict[str, Any] | None:
    return None if result is None else (result.get("evals") or {}).get(source)


def paired_difference(a: dict[str, Any] | None, b: dict[str, Any] | None) -> tuple[float, float] | None:
    """Mean and 95% CI of ``a - b`` over the same test episodes (None unless both have per-task values)."""
    if not a or not b or "values" not in a or "values" not in b or len(a["values"]) != len(b["values"]):
        return None
    return mean_ci95(torch.tensor(a["values"], dtype=torch.float64) - torch.tensor(b["values"], dtype=torch.float64))


def cell(r: dict[str, Any] | None) -> str:
    return "—" if r is None else f"{r['mean']:.2f} ± {r['ci95']:.2f}"


def reproduce(budget: str, out: str, jobs: int = 1, device: str | None = None, only: str | None = None) -> dict[str, Any]:
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r} for alfa-meta-dataset; use one of {', '.join(BUDGETS)}")
    if os.environ.get("INNERLOOP_DATA") and not os.environ.get("INNERLOOP_RECORDS"):
        os.environ["INNERLOOP_RECORDS"] = os.environ["INNERLOOP_DATA"]  # --data names the records folder here
    records_folder(SOURCES)
    device = default_device(device)
    results, info = train_table(rows_for(budget, device), out, jobs, only, "fo-proto-maml-alfa", device)
    by = {r["method"]: r for r in results}
    report = {"name": "alfa-meta-dataset", "budget": budget, **info, "rows": results}
    if not writes_report():
        return report
    out_path = Path(out)
    (out_path / "results.json").write_text(json.dumps(report, indent=1))
    lines = ["# ALFA Table 3: Meta-Dataset, trained on ILSVRC-2012 (accuracy %, mean ± 95% CI over 600 episodes per "
             "source)", "", f"Budget `{budget}`; `innerloop reproduce alfa-meta-dataset --budget {budget} --data "
             "RECORDS`. Paper values in parentheses.", "",
             "| source | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for i, s in enumerate(SOURCES):
        lines.append(f"| {s} | " + " | ".join(f"{cell(by_source(by.get(m), s))} ({PAPER[m][i][0]} ± {PAPER[m][i][1]})" for m in METHODS)
                     + " |")
    (out_path / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out_path / 'results.md'} and {out_path / 'results.json'}")
    return report
