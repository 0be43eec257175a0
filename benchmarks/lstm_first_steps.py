"""Does an untrained LSTM fine-tuner blow up its optimizees? Validation loss per truncated segment, per rule variant.

    python benchmarks/lstm_first_steps.py                                   # the CIFAR-only LFT classification row
    python benchmarks/lstm_first_steps.py results/lft-classification/runs/mnist-cifar-lft --tasks 4

Builds the run's config as committed (``config.toml`` in the run folder) with each variant's ``rule.*`` overrides,
runs the first meta-iteration's 100-step horizon (20-step segments) on the same tasks and per-task initialisations
(seed 0), printing the mean validation loss of each segment (ln 2 = 0.69 is chance on 2-way tasks). Meta-training
starts from this state, so a variant whose losses grow by orders of magnitude starts its meta-training blown up.
Data from ``$INNERLOOP_DATA`` (default ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # --set overrides, as `innerloop train --set` takes them
    "as configured": [],
    "no LSTM bias": ["rule.bias=false"],
    "no LSTM bias, scale 0.01": ["rule.bias=false", "rule.scale=0.01"],
    "scale 0.01": ["rule.scale=0.01"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", nargs="?", default=str(ROOT / "results/lft-classification/runs/cifar-lft"))
    ap.add_argument("--tasks", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("INNERLOOP_DATA", str(ROOT.parent / "shared/data"))
    torch.set_num_threads(int(os.environ.get("INNERLOOP_THREADS", "1")))
    from innerloop.build import build
    from innerloop.config import load

    for name, overrides in VARIANTS.items():
        cfg = load(str(Path(args.run_dir) / "config.toml"), overrides)
        torch.manual_seed(0)
        tasks, meta = build(cfg)
        batch = tasks.train_batch(args.tasks, 0, 0, dtype=torch.float32, device=torch.device("cpu"))
        t0, carry, per_segment = time.perf_counter(), None, []
        for a, b in meta.spans():
            losses, _, carry = meta.meta_backward_span(batch, 0, a, b, carry)
            per_segment.append(float(losses.mean()) / (b - a))
        print(f"{name:28s} validation loss per segment: " + " ".join(f"{x:9.3g}" for x in per_segment)
              + f"   ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
