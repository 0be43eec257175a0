"""Screen learned fine-tuner settings for stability past the training horizon (issue 23), on *validation* tasks.

    python benchmarks/lft_horizon.py NAME [KEY=VALUE ...] [--config sinusoid/lft] [--iterations 300]

Meta-trains ``--config`` with the ``--set``-style settings into ``results/lft-horizon/runs/NAME`` (resumable: rerun
the same command after an interruption) and scores it on ``--tasks`` validation tasks (``eval.seed = 7``, never the
reproduction's test seed 2020) after 1 .. 200 fine-tuning steps, from one unroll. Prints one line per step count and
appends the curve to ``results/lft-horizon/screen.jsonl``. Settings are chosen from these curves; the test tasks are
scored only by ``innerloop reproduce lft-sinusoid``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = [1, 5, 10, 20, 50, 100, 200]
VALIDATION_SEED = 7


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", help="the run folder's name under results/lft-horizon/runs")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE settings (TOML values)")
    ap.add_argument("--config", default="sinusoid/lft")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--meta-batch", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=200, help="validation tasks scored")
    ap.add_argument("--out", default=str(ROOT / "results/lft-horizon"))
    args = ap.parse_args()
    run = Path(args.out) / "runs" / args.name
    sets = [*args.overrides, f"train.iterations={args.iterations}", f"train.meta_batch={args.meta_batch}",
            "train.checkpoint_every=50", "train.log_every=25", f"eval.seed={VALIDATION_SEED}",
            f"eval.tasks={args.tasks}"]
    cmd = [sys.executable, "-m", "innerloop", "train", args.config, "--out", str(run), "--resume-or-start",
           "--no-eval", "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    if not (run / "result.json").exists() or "--retrain" in sys.argv:
        subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    from innerloop.evaluate import evaluate_run

    res = evaluate_run(run, n_tasks=args.tasks, record=STEPS)
    curve = {s["steps"]: (round(s["mean"], 4), round(s["ci95"], 4)) for s in res["by_steps"]}
    print(f"{args.name} ({' '.join(args.overrides) or 'defaults'}; {args.iterations} its, {wall / 60:.1f} min)")
    for s, (m, c) in curve.items():
        print(f"  {s:4d} steps  MSE {m:9.3f} ± {c:.3f}")
    with open(Path(args.out) / "screen.jsonl", "a") as f:
        f.write(json.dumps({"name": args.name, "config": args.config, "overrides": args.overrides,
                            "iterations": args.iterations, "tasks": args.tasks, "seed": VALIDATION_SEED,
                            "curve": curve, "train_wall_s": round(wall, 1)}) + "\n")


if __name__ == "__main__":
    main()
