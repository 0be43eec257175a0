"""Data-parallel training on a CUDA device: exactness against one process, and single-GPU throughput.

    python benchmarks/distributed_cuda.py --out /tmp/bench-cuda --data /work/shared/data      # on a GPU machine

Part 1, exactness (float64): each case trains ``--iterations`` iterations in one process on ``cuda`` and in 2
processes (``torch.multiprocessing.spawn``, a FileStore), then compares the meta-parameters (1e-10 relative, the
CPU suite's bound) and the per-iteration metrics. With one GPU both processes share it, so the process group is
gloo (NCCL refuses two ranks on one device); with two or more GPUs the processes take ``cuda:0`` and ``cuda:1``
over NCCL, as ``torchrun`` gives them.

Part 2, throughput (float32, shipped configs): ``omniglot/maml`` (4-conv 32 filters + BN, meta-batch 16, 1 step) and
``sinusoid/alfa-maml`` (MLP, meta-batch 25, 5 steps) trained for ``--steps`` iterations on the GPU in one process;
tasks/s over the iterations after the first ``--warmup`` (from ``torch.cuda.synchronize``-bracketed wall time),
peak GPU memory. Compare with ``results/benchmarks/distributed-cpu.txt`` (the same workloads on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from innerloop import config as C  # noqa: E402
from innerloop.train import train  # noqa: E402

F64 = ['train.dtype="float64"', "train.log_every=2", "train.checkpoint_every=3",
       "eval.tasks=10", "train.workers=1"]
CASES = {
    "alfa-maml": ("sinusoid/alfa-maml", ["train.meta_batch=5"]),
    "alfa-random": ("sinusoid/alfa-random", ["train.meta_batch=4"]),
    "zeroth-order lft": ("sinusoid/lft", ['oracle.kind="zo"', "train.meta_batch=3", "inner.steps=3"]),
    "maml-l2f conv": ("omniglot/maml-l2f", ["train.meta_batch=3", "model.filters=4", "task.query=2",
                                            "task.eval_query=2"]),
}
TIMING = {"tasks_per_s", "elapsed_s", "eval_s"}


DEVICE = "cuda"  # --device cpu: a smoke run of this script on a machine without a GPU


def sync() -> None:
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _worker(rank: int, world: int, store: str, config: str, sets: list[str], out: str, nccl: bool,
            device: str) -> None:
    if nccl:
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    sets = sets + [f'train.device="{device}"']
    dist.init_process_group("nccl" if nccl else "gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        train(C.load(config, sets), out, progress=False)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def compare(a: Path, b: Path) -> tuple[float, bool]:
    sa = torch.load(a / "checkpoint.pt", weights_only=True, map_location="cpu")
    sb = torch.load(b / "checkpoint.pt", weights_only=True, map_location="cpu")
    worst = 0.0
    for k, v in sa["meta"].items():
        if "conv__bias" in k:  # exactly-zero meta-gradient computed as rounding noise (tests/test_distributed.py)
            continue
        worst = max(worst, float((sb["meta"][k] - v).abs().max() / v.abs().max().clamp_min(1e-30)))
    ma = [{k: v for k, v in json.loads(l).items() if k not in TIMING} for l in (a / "metrics.jsonl").open()]
    mb = [{k: v for k, v in json.loads(l).items() if k not in TIMING} for l in (b / "metrics.jsonl").open()]
    differ = [f"line {i + 1} {k}: {x[k]!r} vs {y.get(k)!r}" for i, (x, y) in enumerate(zip(ma, mb)) for k in x
              if not (abs(x[k] - y.get(k, float("nan"))) <= 1e-10 * max(abs(x[k]), 1e-30) if isinstance(x[k], float)
                      else x[k] == y.get(k))]
    if len(ma) != len(mb):
        differ.append(f"{len(ma)} metrics lines vs {len(mb)}")
    return worst, differ


def exactness(tmp: Path, iterations: int) -> bool:
    nccl = DEVICE == "cuda" and torch.cuda.device_count() >= 2 and dist.is_nccl_available()
    print(f"== exactness: 1 process vs 2 processes on {DEVICE} ({'NCCL, cuda:0 + cuda:1' if nccl else 'gloo, one device'}), "
          f"float64, {iterations} iterations ==")
    ok = True
    for name, (config, extra) in CASES.items():
        sets = F64 + [f"train.iterations={iterations}", *extra]
        if name.endswith("conv") and not (Path(os.environ.get("INNERLOOP_DATA", "")) / "omniglot").is_dir():
            print(f"  {name:<18} skipped: no omniglot/ under --data")
            continue
        one, two = tmp / f"{name}-1".replace(" ", "_"), tmp / f"{name}-2".replace(" ", "_")
        t = time.perf_counter()
        train(C.load(config, sets + [f'train.device="{DEVICE}"']), one, progress=False)
        mp.spawn(_worker, args=(2, str(tmp / f"{one.name}.store"), config, sets, str(two), nccl, DEVICE), nprocs=2,
                 join=True)
        worst, differ = compare(one, two)
        same = not differ
        good = worst < 1e-10 and same
        ok &= good
        print(f"  {name:<18} max relative difference {worst:.2e}  metrics equal {same}  "
              f"{'PASS' if good else 'FAIL'}  ({time.perf_counter() - t:.0f} s)", flush=True)
        for d in differ[:3]:
            print(f"    {d}")
    return ok


def throughput(tmp: Path, steps: int, warmup: int) -> None:
    name = torch.cuda.get_device_name() if DEVICE.startswith("cuda") else "cpu"
    print(f"== throughput on {name} (float32, shipped configs, one process) ==")
    for config, extra in (("omniglot/maml", []), ("sinusoid/alfa-maml", [])):
        if config.startswith("omniglot") and not (Path(os.environ.get("INNERLOOP_DATA", "")) / "omniglot").is_dir():
            print(f"  {config:<20} skipped: no omniglot/ under --data")
            continue
        times: list[float] = []
        import innerloop.progress as progress_mod

        real = progress_mod.Progress.update

        def update(self, *a, **k):  # the end of every iteration (after the optimiser step)
            sync()
            times.append(time.perf_counter())
            return real(self, *a, **k)

        progress_mod.Progress.update = update
        if DEVICE.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        try:
            cfg = C.load(config, [f'train.device="{DEVICE}"', f"train.iterations={steps}", "eval.tasks=10",
                                  "train.log_every=1000000", "train.checkpoint_every=1000000", *extra])
            train(cfg, tmp / f"tp-{config.replace('/', '-')}", progress=False)
        finally:
            progress_mod.Progress.update = real
        timed = times[warmup:]
        rate = (len(timed) - 1) * cfg.train.meta_batch / (timed[-1] - timed[0])
        print(f"  {config:<20} meta-batch {cfg.train.meta_batch:>3}  {rate:8.1f} tasks/s  "
              f"{1e3 * (timed[-1] - timed[0]) / (len(timed) - 1):7.1f} ms/iter  peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**20 if DEVICE.startswith('cuda') else 0:.0f} MiB  "
              f"(iterations {warmup + 1}..{steps})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", help="folder holding omniglot/ (sets $INNERLOOP_DATA)")
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-throughput", action="store_true", help="part 1 only")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run of this script)")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark runs on a GPU machine (or pass --device cpu for a smoke run)")
    if args.data:
        os.environ["INNERLOOP_DATA"] = args.data
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("INNERLOOP_CACHE", str(out / "cache"))
    print(f"torch {torch.__version__}  {DEVICE}  GPUs {torch.cuda.device_count()}  "
          f"nccl {dist.is_nccl_available()}  gloo {dist.is_gloo_available()}", flush=True)
    tmp = Path(tempfile.mkdtemp(dir=out))
    try:
        ok = exactness(tmp, args.iterations)
        if not args.no_throughput:
            throughput(tmp, args.steps, args.warmup)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
