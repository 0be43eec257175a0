"""What does a trained fine-tuner do to one test task, step by step? Losses, accuracy and weight norms.

    python benchmarks/finetune_trace.py results/lft-classification/runs/mnist-cifar-lft mnist
    python benchmarks/finetune_trace.py results/lft-classification/runs/mnist-cifar-lft cifar10 --task 2

Fine-tunes one of the run's first fixed evaluation episodes of SOURCE from a random initialisation drawn
from ``eval.seed`` (evaluation draws a chunk's initialisations together, so not bit-identical to its) and prints, after each listed step: the support loss, the validation loss and accuracy
on D_val, and the norm of every fine-tuned tensor. A fine-tuner that fits and then destroys its optimizee
shows here as a support loss returning to ln(ways) while weight norms grow. Data from ``$INNERLOOP_DATA``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("source", help="a test source of the run, e.g. mnist or cifar10")
    ap.add_argument("--task", type=int, default=0, help="which of the first fixed test tasks")
    ap.add_argument("--steps", default="1,5,10,20,30,40,50,70,100")
    args = ap.parse_args()
    os.environ.setdefault("INNERLOOP_DATA", str(ROOT.parent / "shared/data"))
    torch.set_num_threads(int(os.environ.get("INNERLOOP_THREADS", "1")))
    from innerloop.train import load_run

    cfg, meta, tasks = load_run(args.run_dir)
    n = args.task + 1
    batch = next(iter(tasks.eval_batches(n, cfg.eval.seed, cfg.task.eval_query, n, sources=[args.source])))
    torch.manual_seed(cfg.eval.seed)
    for family, group in meta.groups(batch).items():
        learner, loop = meta.learners[family], meta.loops[family]
        starts, others = meta.task_starts(family, n)
        params = {k: v[args.task].detach() for k, v in starts.items()}
        stat = {k: v[args.task].detach() for k, v in others.items()}
        xs, ys, xq, yq = (t[args.task] for t in group)
        state, done = meta.rule.init_state(params), 0
        print(f"{family}: task {args.task} of source {args.source}")
        print("step | support loss | val loss | val acc % | norms")
        with torch.no_grad():
            for m in sorted(int(s) for s in args.steps.split(",")):
                params, state, _, losses = loop.run(params, state, stat, xs, ys, done, m)
                done, p = m, {**stat, **params}
                norms = " ".join(f"{k}={float(v.norm()):.3g}" for k, v in params.items())
                print(f"{m} | {float(losses[-1]):.4f} | {float(learner.loss(p, xq, yq)):.4f} | "
                      f"{100 * float(learner.metric(p, xq, yq)):.1f} | {norms}")


if __name__ == "__main__":
    main()
