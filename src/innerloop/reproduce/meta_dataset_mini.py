"""A CPU-sized Meta-Dataset cross-domain table: train on Omniglot, test on Omniglot, MNIST and CIFAR-10.

The four methods of ALFA Table 3 (``meta-dataset/fo-maml``, ``fo-maml-alfa``, ``fo-proto-maml``,
``fo-proto-maml-alfa``) on what ``../shared/data`` holds, written as Meta-Dataset records by ``innerloop data
to-records`` (into ``OUT/records`` from ``--data`` / ``$INNERLOOP_DATA`` when missing): Omniglot's TRAIN alphabets
for meta-training, and variable-way variable-shot episodes of Omniglot's TEST alphabets and of MNIST and CIFAR-10
(test-only sources, as in the extended Meta-Dataset) for testing, 600 fixed episodes per source.

The ``cpu`` protocol, fixed before any score was seen, keeps Meta-Dataset's sampler, inner rates, step counts,
first order, one episode per update and Adam rates, and shrinks what costs CPU time (:data:`CPU`): a 4-CONV with 32
filters on 28x28 RGB images (grayscale replicated) instead of a ResNet-18 on 126x126; at most 20 ways (the model's
outputs), 100 support images and 5 query images per class per episode (Meta-Dataset: 50, 500, 10); 1,500 updates
instead of 75,000, the staircase decay's period scaled by the same factor. The ALFA rows use the robust form with
the state schedule (``rule.form = "robust"``, ``rule.schedule = "state"``), so fo-MAML+ALFA can test with 15 steps
after training with 10 as fo-MAML does (the paper form's per-step multipliers do not exist past the trained steps).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from innerloop.errors import UserError
from innerloop.reproduce.alfa_meta_dataset import METHODS, by_source, cell, eval_rows, paired_difference
from innerloop.reproduce.runner import Row, default_device, train_table, writes_report

SOURCES = ["omniglot", "mnist", "cifar10"]
HELD_OUT = ["mnist", "cifar10"]
#: Meta-Dataset's numbers the cpu budget keeps (spec meta-dataset.md 1.3): inner rate, train / test steps, Adam
#: rate, staircase period (of 75,000 updates) and rate
REFERENCE = {"fo-MAML": (0.09915, 10, 15, 3.601e-4, 10000, 0.8355),
             "fo-Proto-MAML": (0.005435, 6, 6, 3.634e-4, 2500, 0.6478)}
CPU = {"iterations": 1500, "image_size": 28, "filters": 32, "max_ways": 20, "max_support": 100, "max_query": 5,
       "eval_tasks": 600}
BUDGETS = {"smoke": {**CPU, "iterations": 2, "eval_tasks": 4, "max_ways": 6, "max_support": 12, "max_query": 2},
           "cpu": CPU}


def rows_for(budget: str, device: str) -> list[Row]:
    b = BUDGETS[budget]
    methods = {}
    for method, config in METHODS.items():
        lr, steps, test_steps, meta_lr, every, rate = REFERENCE[method.replace("+ALFA", "")]
        every = max(1, round(every * b["iterations"] / 75000))
        overrides = [
            'task.sources=["omniglot"]', f"task.eval_sources={json.dumps(SOURCES)}", f"task.image_size={b['image_size']}",
            f"task.max_ways={b['max_ways']}", f"task.max_support={b['max_support']}", f"task.max_query={b['max_query']}",
            'model.name="conv4"', f"model.filters={b['filters']}", f"train.iterations={b['iterations']}",
            f"train.lr_decay_every={every}", f"train.checkpoint_every={min(100, b['iterations'])}",
            f"train.log_every={min(50, b['iterations'])}", f'train.device="{device}"', "eval.chunk=20",
            f"eval.steps={test_steps}", "train.workers=1",
        ]
        if "ALFA" in method:
            overrides += ['rule.form="robust"', 'rule.schedule="state"']
        methods[method] = (config, overrides, {"train": "omniglot", "steps": steps, "eval_steps": test_steps,
                                               "lr": lr, "meta_lr": meta_lr, "decay": [every, rate]})
    return eval_rows(methods, SOURCES, b["eval_tasks"])


def ensure_records(out: Path) -> Path:
    """``OUT/records/{omniglot,mnist,cifar10}``, converted from ``$INNERLOOP_DATA`` when missing (seconds)."""
    from innerloop.data.metadataset.convert import convert

    root = out / "records"
    for source in SOURCES:
        if not (root / source / "dataset_spec.json").is_file():
            if not os.environ.get("INNERLOOP_DATA"):
                raise UserError(f"no records at {root / source} and no data to convert them from: pass --data DIR (the "
                                "folder holding omniglot/, mnist/, cifar10/) or set INNERLOOP_DATA")
            convert(source, root, data=os.environ["INNERLOOP_DATA"])
    return root


def write_markdown(out: Path, results: list[dict[str, Any]], budget: str, info: dict[str, Any]) -> list[dict]:
    by = {r["method"]: r for r in results}
    b = BUDGETS[budget]
    lines = [
        "# Meta-Dataset, CPU-sized: trained on Omniglot, tested across domains (accuracy %, mean ± 95% CI)", "",
        f"Budget `{budget}`; `innerloop reproduce meta-dataset-mini --budget {budget} --data DIR --out DIR` (records "
        "written by `innerloop data to-records`). Hardware: " + ", ".join(f"{k} {v}" for k, v in
                                                                          info["hardware"].items())
        + f". Training wall time of the finished rows: {info['train_wall_s'] / 60:.1f} min. A row shown as — has not "
        "finished yet: rerun the same command to resume it.", "",
        f"Variable-way variable-shot episodes (Meta-Dataset's sampler) with at most {b['max_ways']} ways, "
        f"{b['max_support']} support images, {b['max_query']} query images per class; Omniglot TRAIN alphabets for "
        f"training, {b['eval_tasks']} fixed test episodes per source (Omniglot TEST alphabets; MNIST and CIFAR-10 test-"
        f"only). 4-CONV, {b['filters']} filters, {b['image_size']}x{b['image_size']} RGB scaled to [-1, 1]; "
        f"{b['iterations']} updates of one episode, first order; the inner rates, steps (fo-MAML 10 train / 15 test, "
        "fo-Proto-MAML 6 / 6) and Adam rates are Meta-Dataset's; ALFA rows use `rule.form = \"robust\"`, "
        "`rule.schedule = \"state\"` (see `src/innerloop/reproduce/meta_dataset_mini.py`).", "",
        "| source | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for s in SOURCES:
        lines.append(f"| {s}{' (held out)' if s in HELD_OUT else ''} | "
                     + " | ".join(cell(by_source(by.get(m), s)) for m in METHODS) + " |")
    pairs = []
    for a, b_ in (("fo-Proto-MAML+ALFA", "fo-Proto-MAML"), ("fo-Proto-MAML+ALFA", "fo-MAML+ALFA"),
                  ("fo-MAML+ALFA", "fo-MAML"), ("fo-Proto-MAML", "fo-MAML")):
        for s in SOURCES:
            d = paired_difference(by_source(by.get(a), s), by_source(by.get(b_), s))
            if d is not None:
                pairs.append({"a": a, "b": b_, "source": s, "mean": d[0], "ci95": d[1]})
    if pairs:
        lines += ["", "Paired differences (points; the same episodes; a CI that excludes 0 is a difference):", "",
                  "| comparison | " + " | ".join(SOURCES) + " |", "|---|" + "---|" * len(SOURCES)]
        for a, b_ in dict.fromkeys((p["a"], p["b"]) for p in pairs):
            got = {p["source"]: p for p in pairs if (p["a"], p["b"]) == (a, b_)}
            lines.append(f"| {a} − {b_} | " + " | ".join(
                f"{got[s]['mean']:+.2f} ± {got[s]['ci95']:.2f}" if s in got else "—" for s in SOURCES) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return pairs


def reproduce(budget: str, out: str, jobs: int = 1, device: str | None = None, only: str | None = None) -> dict[str, Any]:
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r} for meta-dataset-mini; use one of {', '.join(BUDGETS)}")
    out_path = Path(out)
    os.environ["INNERLOOP_RECORDS"] = str(ensure_records(out_path).resolve())
    device = default_device(device)
    results, info = train_table(rows_for(budget, device), out, jobs, only, "fo-proto-maml-alfa", device)
    report = {"name": "meta-dataset-mini", "budget": budget, "protocol": BUDGETS[budget], **info, "rows": results}
    if not writes_report():
        return report
    report["paired"] = write_markdown(out_path, results, budget, info)
    (out_path / "results.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out_path / 'results.md'} and {out_path / 'results.json'}")
    return report
