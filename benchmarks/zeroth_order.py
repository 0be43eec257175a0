"""Zeroth-order meta-training cost on the LFT UAP workload, against first order, in one command.

    python benchmarks/zeroth_order.py                 # MNIST and CIFAR-10 LeNet-5 victims, 3 repeats
    python benchmarks/zeroth_order.py --repeats 5 --device cuda

Workload: the ``lft/uap`` config (2x20 LSTM fine-tuner, perturbation of a frozen LeNet-5 victim, 2 x 5
training and 2 x 5 validation images per task), meta-batch 5, one 20-step truncated segment; data from
``$INNERLOOP_DATA`` (default ../shared/data), victims from ``$INNERLOOP_VICTIMS`` (default results/victims).
Oracles: ``fo`` (exact gradient, detached input: one forward + backward per step), ``zo`` (q = 20 Gaussian
directions, the estimate kept in the meta-graph as LFT Statement 1 allows), ``zo-detached``
(``oracle.detach = true``: the estimate is a constant in the meta-gradient). Prints seconds per meta-step
(median of the repeats, after one warm-up) and the ratio to ``fo`` measured in the same process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "fo": ['oracle.kind="autograd"'],
    "zo": ['oracle.kind="zo"', "oracle.q=20", "oracle.mu=0.005"],
    "zo-detached": ['oracle.kind="zo"', "oracle.q=20", "oracle.mu=0.005", "oracle.detach=true"],
}


def seconds_per_step(source: str, variant: str, repeats: int, device: str) -> float:
    from innerloop import config
    from innerloop.build import build

    cfg = config.load("lft/uap", [*VARIANTS[variant], "inner.steps=20", "train.truncation=20", "train.meta_batch=5",
                                  f'task.sources=["{source}"]', f'task.eval_sources=["{source}"]',
                                  f'train.device="{device}"'])
    tasks, meta = build(cfg)
    times = []
    for i in range(repeats + 1):
        batch = tasks.train_batch(5, 0, i, device=torch.device(device))
        torch.manual_seed(i)
        meta.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        meta.meta_backward_span(batch, 0, 0, 20, None)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sources", default="mnist,cifar10")
    args = ap.parse_args()
    os.environ.setdefault("INNERLOOP_DATA", str(ROOT.parent / "shared" / "data"))
    os.environ.setdefault("INNERLOOP_VICTIMS", str(ROOT / "results" / "victims"))
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}; "
          "one meta-step = 5 tasks x 20 fine-tuning steps, backpropagated")
    print(f"{'victim':<8} {'oracle':<12} {'s / meta-step':>14} {'x fo':>7}")
    for source in args.sources.split(","):
        base = None
        for variant in VARIANTS:
            s = seconds_per_step(source, variant, args.repeats, args.device)
            base = base or s
            print(f"{source:<8} {variant:<12} {s:>14.3f} {s / base:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
