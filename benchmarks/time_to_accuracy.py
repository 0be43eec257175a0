"""Time to accuracy: meta-train a shipped config with periodic evaluation on its fixed test tasks, and plot
the test score against training wall time (evaluation time excluded, and reported).

    python benchmarks/time_to_accuracy.py omniglot/maml --minutes 25 --eval-every 100 \\
        --out results/benchmarks/time_to_accuracy/omniglot-maml --data ../shared/data
    python benchmarks/time_to_accuracy.py sinusoid/maml --minutes 1 --eval-every 100 \\
        --out results/benchmarks/time_to_accuracy/sinusoid-maml

It runs ``innerloop train`` (the library's own training loop, exactly as a user gets it) with
``train.eval_every``, stops after ``--minutes`` of training time (or at ``--iterations``), and writes into
``--out``: the run directory (``run/``: config, metrics, checkpoint), ``curve.jsonl`` (one line per
evaluation: iteration, training seconds, evaluation seconds, score mean and 95% CI), ``curve.png`` and
``summary.json`` (first training time at which each ``--targets`` value was reached). ``--set`` overrides
config keys as on the command line (e.g. ``task.eval_split="val"`` to choose settings on validation
classes, never the test ones). An unfinished benchmark resumes from its checkpoint when rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from innerloop.config import load as load_config
from innerloop.train import train


def reached(curve: list[dict], target: float, lower_is_better: bool) -> dict | None:
    """The first evaluation at which the score met ``target`` (None if never)."""
    for point in curve:
        if (point["mean"] <= target) if lower_is_better else (point["mean"] >= target):
            return point
    return None


def read_curve(metrics: Path) -> list[dict]:
    curve = []
    for line in metrics.read_text().splitlines():
        rec = json.loads(line)
        if "eval" in rec:
            e = rec["eval"]
            curve.append({"iteration": rec["iteration"], "train_s": rec["elapsed_s"], "eval_s": rec["eval_s"],
                          "mean": e["mean"], "ci95": e["ci95"], "metric": e["metric"], "tasks": e["tasks"],
                          "steps": e["steps"]})
    return curve


def plot(curve: list[dict], targets: list[float], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    t = [p["train_s"] / 60 for p in curve]
    m = [p["mean"] for p in curve]
    ci = [p["ci95"] for p in curve]
    ax.plot(t, m, marker=".", label=curve[0]["metric"] if curve else "")
    ax.fill_between(t, [a - b for a, b in zip(m, ci)], [a + b for a, b in zip(m, ci)], alpha=0.25)
    for target in targets:
        ax.axhline(target, ls="--", lw=0.8, color="gray")
    ax.set_xlabel("training wall time (minutes, evaluation excluded)")
    ax.set_ylabel(f"test {curve[0]['metric'] if curve else ''} (mean, 95% CI)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="shipped config name or TOML file, e.g. omniglot/maml")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=25.0, help="stop after this much training time")
    ap.add_argument("--iterations", type=int, default=10**7, help="or after this many meta-iterations")
    ap.add_argument("--eval-every", type=int, default=100, help="meta-iterations between evaluations")
    ap.add_argument("--targets", default="", help="comma-separated scores to time, e.g. 95,97 (MSE: 0.5)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--data", default=None, help="dataset folder (sets $INNERLOOP_DATA)")
    args = ap.parse_args()
    if args.data:
        os.environ["INNERLOOP_DATA"] = str(Path(args.data).resolve())
    out = Path(args.out)
    cfg = load_config(args.config, [*args.set, f"train.eval_every={args.eval_every}",
                                    f"train.iterations={args.iterations}"])
    run = out / "run"
    budget = args.minutes * 60

    def on_eval(record: dict) -> bool:
        e = record["eval"]
        print(f"  iteration {record['iteration']:6d}  train {record['elapsed_s'] / 60:6.2f} min  "
              f"{e['metric']} {e['mean']:.3f} ± {e['ci95']:.3f}  (eval {record['eval_s']:.1f} s)", flush=True)
        return record["elapsed_s"] >= budget

    resume = (run / "checkpoint.pt").exists()
    curve = read_curve(run / "metrics.jsonl") if resume else []
    if not curve or curve[-1]["train_s"] < budget:
        train(cfg, run, resume=resume, progress=False, on_eval=on_eval)
    curve = read_curve(run / "metrics.jsonl")
    lower = bool(curve) and curve[0]["metric"] == "mse"
    targets = [float(t) for t in args.targets.split(",") if t]
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in curve))
    summary = {
        "config": args.config, "overrides": args.set, "eval_every": args.eval_every,
        "eval_tasks": cfg.eval.tasks, "eval_split": cfg.task.eval_split,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "torch": torch.__version__, "device": cfg.train.device,
        "iterations": curve[-1]["iteration"] if curve else 0, "train_s": curve[-1]["train_s"] if curve else 0.0,
        "eval_s_total": sum(p["eval_s"] for p in curve),
        "best": (min if lower else max)((p["mean"] for p in curve), default=None),
        "targets": {str(t): (None if (p := reached(curve, t, lower)) is None else
                             {"train_s": p["train_s"], "iteration": p["iteration"], "mean": p["mean"], "ci95": p["ci95"]})
                    for t in targets},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(curve, targets, f"{args.config} {' '.join(args.set)}".strip(), out / "curve.png")
    for t, p in summary["targets"].items():
        print(f"target {t}: " + ("not reached" if p is None else
                                 f"{p['train_s'] / 60:.2f} min of training (iteration {p['iteration']}, {p['mean']:.3f})"))


if __name__ == "__main__":
    main()
