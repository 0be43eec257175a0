"""Meta-training throughput and peak memory: vmap path vs per-task loop, measured in one run.

    python benchmarks/meta_training.py            # all workloads (about 10 minutes on 2 CPU cores)
    python benchmarks/meta_training.py --quick    # fewer iterations
    python benchmarks/meta_training.py --device cuda

Each measurement runs in a fresh subprocess so that its peak memory (``ru_maxrss`` on CPU,
``torch.cuda.max_memory_allocated`` on GPU) is its own; it is reported above the process's
baseline after the model and batch are built. Ratios are against the loop measured in the same
command (these machines are noisy: compare ratios, not absolute numbers).

Workloads:
* sinusoid: MLP 1-40-40-1, meta-batch 25, 10+10 points, 5 inner steps, second order (SGD and ALFA);
* lstm: the LFT fine-tuner (2x20 LSTM) on the same MLP, meta-batch 5, 20-step unroll;
* conv: 4-conv, 64 filters, batch norm, 1x28x28, 5-way 1-shot, 15 queries, meta-batch 16, 1 and 5 steps;
* unroll: the conv workload at 1..20 inner steps with and without the checkpointed unroll;
* omniglot: 4-CONV (64 filters, batch norm) on real Omniglot episodes (Vinyals trainval split, read through
  the dataset cache from ``--data``, default ``$INNERLOOP_DATA`` or ../shared/data), 5-way 1-shot 15 queries,
  meta-batch 16, 1 and 5 steps, MAML and ALFA.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(spec: dict) -> dict:
    import torch

    from innerloop.engine import Learner, MetaLearner
    from innerloop.inits import LearnedInit, RandomInit
    from innerloop.models import MLP, Conv4
    from innerloop.objectives import TrajectoryLoss
    from innerloop.rules import ALFA, SGD, CoordinateLSTM
    from innerloop.tasks import SinusoidTasks

    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # as the CLI does
    device = torch.device(spec["device"])
    if spec["workload"] == "sinusoid":
        model = MLP(1, [40, 40], 1).to(device)
        learner = Learner(model, "mse")
        batch = SinusoidTasks(shots=10, query=10).train_batch(spec.get("batch", 25), 0, 0, device=device)
    elif spec["workload"] == "omniglot":
        from innerloop.data import load_dataset
        from innerloop.tasks import EpisodeTasks

        model = Conv4(1, 5, filters=64, image_size=28, activation="relu").to(device)
        learner = Learner(model, "cross_entropy")
        data = load_dataset("omniglot", spec["data"], "trainval", image_size=28)
        batch = EpisodeTasks(data, 5, 1, 15, eval_query=15).train_batch(16, 0, 0, device=device)
    else:
        model = Conv4(1, 5, filters=64, image_size=28).to(device)
        learner = Learner(model, "cross_entropy")
        g = torch.Generator().manual_seed(0)
        n, ways, shots, q = 16, 5, 1, 15
        batch = (
            torch.randn(n, ways * shots, 1, 28, 28, generator=g).to(device),
            torch.arange(ways).repeat_interleave(shots).expand(n, -1).contiguous().to(device),
            torch.randn(n, ways * q, 1, 28, 28, generator=g).to(device),
            torch.arange(ways).repeat_interleave(q).expand(n, -1).contiguous().to(device),
        )
    steps = spec["steps"]
    shapes = {k: model.get_parameter(k).shape for k in learner.inner}
    if spec["rule"] == "lstm":  # the LFT fine-tuner: fresh random init per task, trajectory objective
        rule, init, objective = CoordinateLSTM(), RandomInit(model), TrajectoryLoss()
    else:
        rule = ALFA(shapes, steps) if spec["rule"] == "alfa" else SGD(0.01)
        init, objective = LearnedInit(model), None
    meta = MetaLearner(learner, init, rule, objective=objective, steps=steps, executor=spec["mode"],
                       checkpoint=spec.get("checkpoint", 0), device=device).to(device)
    opt = torch.optim.Adam(meta.parameters(), 1e-3)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    opt.zero_grad(); meta.meta_backward(batch); opt.step()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(spec["iters"]):
        opt.zero_grad(); meta.meta_backward(batch); opt.step()
    sync()
    dt = (time.perf_counter() - t0) / spec["iters"]
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"tasks_per_s": batch[0].shape[0] / dt, "peak_mib": peak, "mode": meta.mode}


def run(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="sinusoid,lstm,conv,unroll,omniglot")
    ap.add_argument("--data", default=None, help="folder holding omniglot/ (default $INNERLOOP_DATA or ../shared/data)")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    q = args.quick
    parts = args.only.split(",")
    print(f"device={args.device}  (tasks/s: higher is better; peak: MiB above baseline)")
    if "sinusoid" in parts:
        print("\n== sinusoid: MLP 1-40-40-1, meta-batch 25, 5 steps, second order ==")
        for rule in ("sgd", "alfa"):
            res = {m: run({"workload": "sinusoid", "rule": rule, "steps": 5, "mode": m, "device": args.device,
                           "iters": (10 if m == "loop" else 40) // (2 if q else 1)}) for m in ("loop", "vmap", "auto")}
            loop = res["loop"]["tasks_per_s"]
            for m, r in res.items():
                print(f"  {rule:5s} {m:5s} ({r['mode']:4s}) {r['tasks_per_s']:9.1f} tasks/s  x{r['tasks_per_s'] / loop:5.2f} vs loop"
                      f"   peak {r['peak_mib']:8.1f} MiB")
    if "lstm" in parts:
        print("\n== fine-tuner: LSTM 2x20 on MLP 1-40-40-1, meta-batch 5, 20-step unroll, LFT objective ==")
        res = {m: run({"workload": "sinusoid", "rule": "lstm", "steps": 20, "mode": m, "device": args.device,
                       "batch": 5, "iters": 2 if q else 4}) for m in ("loop", "vmap", "auto")}
        loop = res["loop"]["tasks_per_s"]
        for m, r in res.items():
            print(f"  lstm  {m:5s} ({r['mode']:4s}) {r['tasks_per_s']:9.1f} tasks/s  x{r['tasks_per_s'] / loop:5.2f} vs loop"
                  f"   peak {r['peak_mib']:8.1f} MiB")
    if "conv" in parts:
        print("\n== conv: 4-conv 64 filters + BN, 1x28x28, 5-way 1-shot 15 queries, meta-batch 16, second order ==")
        for steps in (1, 5):
            res = {m: run({"workload": "conv", "rule": "sgd", "steps": steps, "mode": m, "device": args.device,
                           "iters": 1 if q else 3}) for m in ("loop", "vmap", "auto")}
            loop = res["loop"]
            for m, r in res.items():
                print(f"  steps={steps} {m:5s} ({r['mode']:4s}) {r['tasks_per_s']:7.2f} tasks/s  x{r['tasks_per_s'] / loop['tasks_per_s']:5.2f} vs loop"
                      f"   peak {r['peak_mib']:8.1f} MiB  x{r['peak_mib'] / max(loop['peak_mib'], 1e-9):5.2f} vs loop")
    if "omniglot" in parts:
        import os
        from pathlib import Path

        root = Path(args.data or os.environ.get("INNERLOOP_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
        print(f"\n== omniglot: 4-CONV 64 filters + BN on real Omniglot episodes ({root / 'omniglot'}), 5-way 1-shot "
              "15 queries, meta-batch 16, second order ==")
        for rule in ("sgd", "alfa"):
            for steps in (1, 5):
                res = {m: run({"workload": "omniglot", "rule": rule, "steps": steps, "mode": m, "device": args.device,
                               "data": str(root / "omniglot"), "iters": 1 if q else 3}) for m in ("loop", "vmap", "auto")}
                loop = res["loop"]
                for m, r in res.items():
                    print(f"  {rule:4s} steps={steps} {m:5s} ({r['mode']:4s}) {r['tasks_per_s']:7.2f} tasks/s  "
                          f"x{r['tasks_per_s'] / loop['tasks_per_s']:5.2f} vs loop   peak {r['peak_mib']:8.1f} MiB  "
                          f"x{r['peak_mib'] / max(loop['peak_mib'], 1e-9):5.2f} vs loop")
    if "unroll" in parts:
        print("\n== long unrolls: conv workload, auto executor, plain vs checkpointed (c=1) ==")
        base = {}
        for steps in (1, 5, 10, 20):
            for ck in (0, 1):
                r = run({"workload": "conv", "rule": "sgd", "steps": steps, "mode": "auto", "checkpoint": ck,
                         "device": args.device, "iters": 1 if q else 2})
                if steps == 1:
                    base[ck] = r["peak_mib"]
                plain = base.get(("t", steps))
                if ck == 0:
                    base[("t", steps)] = r["tasks_per_s"]
                time_ratio = "" if ck == 0 else f"  time x{base[('t', steps)] / r['tasks_per_s']:4.2f} vs plain"
                print(f"  steps={steps:2d} checkpoint={ck} ({r['mode']}) {r['tasks_per_s']:7.2f} tasks/s  peak {r['peak_mib']:8.1f} MiB"
                      f"  x{r['peak_mib'] / max(base[ck], 1e-9):4.2f} vs 1 step{time_ratio}")


if __name__ == "__main__":
    main()
