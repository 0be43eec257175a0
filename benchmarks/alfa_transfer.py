"""Transferable ALFA applied unchanged to architectures it was not meta-trained on (issue 24, part 3).

    python benchmarks/alfa_transfer.py [--data DIR] [--out results/alfa-transfer] [--iterations N]

The source: the ``shared ALFA+MAML`` row of ``innerloop reproduce omniglot --budget cpu`` (``rule.kind =
"alfa_shared"``: one generator for every tensor, meta-trained with a 4-CONV on Omniglot 5-way 1-shot), taken from
``--source`` (default ``results/omniglot/runs/5w1s-alfa-maml-shared``; trained here first if it is missing).

The targets, each a model MAML trained with its own fixed-rate SGD:

* ``omniglot-mlp``: Omniglot 5-way 1-shot with MAML's Omniglot MLP (784-256-128-64-64-5), the same protocol as
  the source row (1 inner step at 0.4, 8,000 iterations unless ``--iterations``), trained here into ``OUT/runs/``;
* ``sinusoid-mlp``: the 2x40 sinusoid MLP of ``results/alfa-sinusoid/runs/5step-maml-2x40-k10`` (5 steps at 0.01).

Each target is scored from its own MAML initialisation on the same fixed test tasks (600), after 1, 5 and 10
steps: with its fixed-rate SGD; with the source's trained rule anchored at the target's own SGD rate
(``SharedALFA.with_base_lr``: the learned multipliers and the learned change of the base rate kept, relative to
the target's rate; what ``innerloop finetune RUN --lr RATE`` does, and the protocol fixed before any score was
seen); and, as a second column, the rule exactly as trained (the source's base rate). The table gives them and
the paired difference (anchored rule minus SGD; accuracy in points, MSE) with its 95% CI. ``OUT/results.md`` and
``OUT/results.json``; rerunning reuses finished runs and resumes unfinished ones.

``--source`` may be given more than once (every source rule is scored on every target). For each (source, target)
the table also gives the spread of the rates the rule generates on the target (over 20 test tasks, every step and
tensor, as multiples of the rule's base rate): a rule whose generator sits at one bound everywhere is a learned
scalar rate, whatever its architecture-free form.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS = [1, 5, 10]


def innerloop(*args: str) -> None:
    cmd = [sys.executable, "-m", "innerloop", *args]
    print("$ innerloop " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def ensure_run(run: Path, train_args: list[str]) -> None:
    """Train ``run``, or resume it (a finished run returns at once)."""
    if (run / "checkpoint.pt").exists():
        innerloop("train", "--resume", "--out", str(run), "--no-eval")
    else:
        innerloop("train", *train_args, "--out", str(run), "--no-eval")


DEFAULT_SOURCE = ROOT / "results/omniglot/runs/5w1s-alfa-maml-shared"


def source_run(args, source: str) -> Path:
    src = Path(source)
    default = src.resolve().parent == DEFAULT_SOURCE.parent.resolve()
    if not (src / "checkpoint.pt").exists() or (default and not (src / "result.json").exists()):
        # the reproduction's row: trained, or resumed, by the reproduction (a --source of your own is used as is)
        innerloop("reproduce", "omniglot", "--budget", "cpu", "--out", str(src.parent.parent), "--data", args.data,
                  "--only", src.name)
    return src


def target_runs(args, out: Path) -> dict[str, Path]:
    from innerloop.reproduce.omniglot import rows_for

    (row,) = [r for r in rows_for("cpu", "cpu") if r.id == "5w1s-maml"]
    sets = [o for o in row.overrides if not o.startswith("train.iterations=")]
    if args.iterations:
        sets.append(f"train.iterations={args.iterations}")
    else:
        sets += [o for o in row.overrides if o.startswith("train.iterations=")]
    sets += ['model.name="mlp"', "model.hidden=[256, 128, 64, 64]"]
    mlp = out / "runs" / "omniglot-mlp-maml"
    ensure_run(mlp, [row.config, "--data", args.data, *[a for s in sets for a in ("--set", s)]])
    return {"omniglot-mlp": mlp, "sinusoid-mlp": ROOT / "results/alfa-sinusoid/runs/5step-maml-2x40-k10"}


def score(run: Path, rule, n_tasks: int) -> dict:
    """``run``'s MAML init adapted by ``rule`` (None: its own SGD) on its fixed test tasks."""
    from innerloop.build import build_tasks
    from innerloop.engine import MetaLearner
    from innerloop.evaluate import evaluate_meta
    from innerloop.loading import load

    base = load(run)
    cfg = base.config
    meta = base if rule is None else MetaLearner(base.learner, base.init, rule, base.oracle, steps=max(STEPS))
    with torch.no_grad():
        return evaluate_meta(cfg, meta, build_tasks(cfg), n_tasks=n_tasks, steps=max(STEPS), record=STEPS)


def rate_spread(run: Path, rule, n_tasks: int = 20) -> dict:
    """Quantiles of the rates ``rule`` generates on ``run``'s first ``n_tasks`` test tasks (every step and tensor),
    divided by its base rate ``exp(log_lr)``: the generator's multipliers, in [1/bound, bound]."""
    from innerloop.build import build_tasks
    from innerloop.engine import MetaLearner
    from innerloop.loading import load
    from innerloop.plots import generated_rates

    base = load(run)
    meta = MetaLearner(base.learner, base.init, rule, base.oracle, steps=max(STEPS))
    with torch.no_grad():
        lr, _ = generated_rates(base.config, meta, build_tasks(base.config), n_tasks, max(STEPS))
        m = (lr / rule.log_lr.exp()).flatten().double()
    q = torch.quantile(m, torch.tensor([0.0, 0.5, 1.0], dtype=m.dtype)).tolist()
    return {"min": q[0], "median": q[1], "max": q[2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/work/shared/data", help="folder holding omniglot/")
    ap.add_argument("--source", action="append", default=None,
                    help=f"a source run (repeatable; default {DEFAULT_SOURCE.relative_to(ROOT)})")
    ap.add_argument("--out", default=str(ROOT / "results/alfa-transfer"))
    ap.add_argument("--iterations", type=int, default=None, help="meta-iterations of the Omniglot MLP target")
    ap.add_argument("--tasks", type=int, default=600)
    args = ap.parse_args()
    import os

    os.environ["INNERLOOP_DATA"] = args.data
    from innerloop.evaluate import paired_difference
    from innerloop.finetune import load_fine_tuner

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = [source_run(args, s) for s in (args.source or [str(DEFAULT_SOURCE)])]
    targets = target_runs(args, out)
    rows, spreads = [], []
    from innerloop.loading import load

    for src in sources:
        rule = load_fine_tuner(src)
        for name, run in targets.items():
            target_lr = float(load(run).config.rule.lr)
            sgd, ours = score(run, None, args.tasks), score(run, rule.with_base_lr(target_lr), args.tasks)
            raw = score(run, rule, args.tasks)
            spreads.append({"source": src.name, "target": name, **rate_spread(run, rule.with_base_lr(target_lr))})
            print(spreads[-1], flush=True)
            for a, b, c in zip(sgd["by_steps"], ours["by_steps"], raw["by_steps"]):  # per task; accuracy in %
                d = paired_difference(b["values"], a["values"])
                rows.append({"source": src.name, "source_lr": rule.lr, "target": name, "metric": sgd["metric"],
                             "steps": a["steps"], "target_lr": target_lr,
                             "sgd": a["mean"], "sgd_ci95": a["ci95"], "rule": b["mean"], "rule_ci95": b["ci95"],
                             "rule_as_trained": c["mean"], "rule_as_trained_ci95": c["ci95"],
                             **{f"diff_{k}": v for k, v in d.items()}})
                print(rows[-1], flush=True)
    rel = [str(s.relative_to(ROOT)) if s.is_relative_to(ROOT) else str(s) for s in sources]
    (out / "results.json").write_text(json.dumps({"sources": rel, "tasks": args.tasks, "rows": rows,
                                                  "rate_spread": spreads}, indent=1))
    lines = ["# Transferable ALFA applied unchanged to other architectures", "",
             f"Produced by `python benchmarks/alfa_transfer.py` (its docstring has the protocol). Source rules: "
             + ", ".join(f"`{s.name}`" for s in sources) + " (each meta-trained with a 4-CONV on Omniglot 5-way "
             f"1-shot). {args.tasks} fixed test tasks per target; each target's own MAML initialisation; *diff* = rule "
             "minus SGD, paired over tasks (accuracy: higher is better; MSE: lower).", "",
             "*rule at the target's rate*: anchored at the target's SGD rate (`innerloop finetune --lr`), the "
             "protocol; *as trained*: the source's base rate, for reference.", "",
             "| source | target | metric | steps | MAML's SGD (rate) | rule at the target's rate | diff (95% CI) | "
             "rule as trained |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['source']} | {r['target']} | {r['metric']} | {r['steps']} | {r['sgd']:.3f} ± "
                     f"{r['sgd_ci95']:.3f} ({r['target_lr']:g}) | {r['rule']:.3f} ± {r['rule_ci95']:.3f} | "
                     f"{r['diff_mean']:+.3f} ± {r['diff_ci95']:.3f} | {r['rule_as_trained']:.3g} |")
    lines += ["", "Rates the anchored rule generates on each target (20 test tasks, every step and tensor), as "
              "multiples of its base rate (the generator's multipliers, within [1/bound, bound]):", "",
              "| source | target | min | median | max |", "|---|---|---|---|---|"]
    for sp in spreads:
        lines.append(f"| {sp['source']} | {sp['target']} | {sp['min']:.3f} | {sp['median']:.3f} | {sp['max']:.3f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'results.md'}")


if __name__ == "__main__":
    main()
