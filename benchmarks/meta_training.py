"""Meta-training throughput and peak memory: innerloop's executors against hand-written torch.func, in one run.

    python benchmarks/meta_training.py                  # every section (about 15 minutes on 2 CPU cores)
    python benchmarks/meta_training.py --only engine    # innerloop vs hand-written references (goals 1-2)
    python benchmarks/meta_training.py --quick          # fewer rounds and iterations
    python benchmarks/meta_training.py --device cuda

``engine`` (the headline): on the sinusoid workload (MLP 1-40-40-1, meta-batch 25, 10+10 points, 5 second-order
steps at 0.01) and the conv workload (4-conv 64 filters + batch norm, 1x28x28, 5-way 1-shot 15 queries,
meta-batch 16, 1 second-order step at 0.4), it first checks in float64 that every variant's meta-gradient equals
the hand-written loop's (``benchmarks/references.py``; compiled variants in float32 against the eager vmap), then
times all variants in interleaved rounds in one process (median tasks/s over rounds; the ratios are per round, so
machine drift cancels), and measures each variant's peak memory in a fresh subprocess (steady state: after a
warm-up, including any compilation, the peak resident set is reset through ``/proc/self/clear_refs``).
Variants: ``hand-loop`` / ``hand-vmap`` (references), innerloop ``loop`` / ``vmap`` executors, ``loop+threads``
(``train.workers = 0``: the loop's tasks in one thread per core, one intra-op thread each) and ``vmap+compile``
(``train.compile``; sinusoid, and conv with ``--compile-conv``).

Each measurement runs in a fresh subprocess so that its peak memory (``VmHWM`` on CPU, reset after the
warm-up iteration; ``torch.cuda.max_memory_allocated`` on GPU) is its own; it is reported above the
process's resident memory after the model and batch are built. Ratios are against the loop measured in the same
command (these machines are noisy: compare ratios, not absolute numbers).

Workloads:
Other sections (innerloop's executors against each other):

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
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ENGINE_VARIANTS = ("hand-loop", "hand-vmap", "loop", "loop+threads", "vmap", "vmap+compile")


def engine_setup(workload: str, variant: str, dtype, device):
    """(step function that accumulates the meta-gradient, {name: leaf tensor whose .grad it fills}, tasks)."""
    import torch

    import references as ref
    from innerloop.engine import Learner, MetaLearner
    from innerloop.inits import LearnedInit
    from innerloop.models import MLP, Conv4
    from innerloop.rules import SGD
    from innerloop.tasks import SinusoidTasks

    torch.manual_seed(0)
    if workload == "sinusoid":
        model, loss_name, steps, lr = MLP(1, [40, 40], 1), "mse", 5, 0.01
        batch = SinusoidTasks(shots=10, query=10).train_batch(25, 0, 0, dtype=dtype, device=device)
        forward, loss = ref.functional(model.to(device=device, dtype=dtype)), ref.mse
    else:
        # conv: the workload; conv-small: omniglot/maml's shipped recipe (32 filters, 5 queries per class)
        filters, q = (64, 15) if workload == "conv" else (32, 5)
        model, loss_name, steps, lr = Conv4(1, 5, filters=filters, image_size=28, activation="relu"), "cross_entropy", 1, 0.4
        g = torch.Generator().manual_seed(0)
        n, ways = 16, 5
        batch = (torch.randn(n, ways, 1, 28, 28, generator=g, dtype=dtype).to(device),
                 torch.arange(ways).expand(n, -1).contiguous().to(device),
                 torch.randn(n, ways * q, 1, 28, 28, generator=g, dtype=dtype).to(device),
                 torch.arange(ways).repeat_interleave(q).expand(n, -1).contiguous().to(device))
        # the references' own copy: nn.BatchNorm2d (fused) in the loop, elementary batch norm under vmap
        twin = Conv4(1, 5, filters=filters, image_size=28, activation="relu", norm="torch" if variant == "hand-loop" else "batch")
        twin.load_state_dict(model.state_dict())
        for m in twin.modules():
            if hasattr(m, "fused"):
                m.fused = False
        forward = ref.functional(twin.to(device=device, dtype=dtype))
        loss = torch.nn.functional.cross_entropy
    model = model.to(device=device, dtype=dtype)
    if variant.startswith("hand"):
        theta = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
        inner = [k for k in theta if ".norm." not in k]
        fn = ref.hand_loop if variant == "hand-loop" else ref.hand_vmap

        def step():
            for v in theta.values():
                v.grad = None
            fn(forward, loss, theta, inner, batch, steps, lr)
        return step, theta, batch[0].shape[0]
    meta = MetaLearner(Learner(model, loss_name), LearnedInit(model), SGD(lr), steps=steps,
                       executor=variant.split("+")[0], compile=variant.endswith("+compile"), device=device,
                       workers=0 if variant.endswith("+threads") else 1)
    meta.to(device=device, dtype=dtype)

    def step():
        meta.zero_grad(set_to_none=True)
        meta.meta_backward(batch)
    return step, meta.init(), batch[0].shape[0]


def rel_error(a: dict, b: dict) -> float:
    """||a - b|| / ||b|| over all tensors together (per tensor would divide by the ~0 gradient of a conv bias that
    batch norm cancels)."""
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in b)
    den = sum(float(b[k].double().pow(2).sum()) for k in b)
    return (num / den) ** 0.5


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def engine_memory(spec: dict) -> dict:
    """Steady-state peak memory of one variant (run in a fresh process)."""
    import torch

    device = torch.device(spec["device"])
    torch.set_flush_denormal(True)
    cuda = device.type == "cuda"
    if cuda:
        base = torch.cuda.memory_allocated()
    else:
        base = _rss("VmRSS")
    step, _, _ = engine_setup(spec["workload"], spec["variant"], torch.float32, device)
    step()  # warm-up (and compilation)
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        _reset_peak()
    for _ in range(2):
        step()
    _sync(device)
    peak = (torch.cuda.max_memory_allocated() - base) if cuda else (_rss("VmHWM") - base)
    return {"peak_mib": peak / 2**20}


def _rss(field: str) -> int:
    """Bytes of ``VmRSS`` (resident now) or ``VmHWM`` (peak since the last reset) from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current resident set


def engine(device: str, quick: bool, compile_conv: bool,
           workloads: tuple[str, ...] = ("sinusoid", "conv", "conv-small")) -> None:
    import torch

    torch.set_flush_denormal(True)
    print("\n== engine: innerloop vs hand-written torch.func (second order; references in benchmarks/references.py) ==")
    for workload in workloads:
        variants = [v for v in ENGINE_VARIANTS if (workload == "sinusoid" or compile_conv or v != "vmap+compile")
                    and (workload != "sinusoid" or v != "loop+threads")]
        # 1. meta-gradients equal: eager variants in float64 against the hand-written loop
        ref_grads = None
        worst = {}
        for v in [x for x in variants if "compile" not in x]:
            step, leaves, _ = engine_setup(workload, v, torch.float64, device)
            step()
            grads = {k: t.grad.detach().clone() for k, t in leaves.items()}
            if ref_grads is None:
                ref_grads = grads
                continue
            worst[v] = rel_error(grads, ref_grads)
            if worst[v] > 1e-9:
                raise SystemExit(f"{workload}: {v}'s meta-gradient differs from the hand-written loop's "
                                 f"(relative error {worst[v]:.2e}): not timing a wrong engine")
        # 2. time in float32, interleaved rounds; compiled variants checked against the eager vmap (float32)
        runs, first = {}, {}
        for v in variants:
            step, leaves, n = engine_setup(workload, v, torch.float32, device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            first[v] = time.perf_counter() - t0
            runs[v] = (step, leaves, n)
        for v in [x for x in variants if "compile" in x]:
            base = runs[v.split("+")[0]]
            base[0]()
            runs[v][0]()
            worst[v] = rel_error({k: t.grad for k, t in runs[v][1].items()}, {k: t.grad for k, t in base[1].items()})
            if worst[v] > 1e-4:
                raise SystemExit(f"{workload}: {v}'s meta-gradient differs from the eager vmap's ({worst[v]:.2e})")
        # many short rounds: each ratio compares neighbours in time (this machine's speed drifts by +-20%)
        rounds = (15 if quick else 40) if workload == "sinusoid" else (3 if quick else 6 if workload == "conv" else 15)
        iters = {v: (1 if workload != "sinusoid" or "loop" in v else 4) for v in variants}
        speed = {v: [] for v in variants}
        for _ in range(rounds):
            for v in variants:
                step, _, n = runs[v]
                t0 = time.perf_counter()
                for _ in range(iters[v]):
                    step()
                _sync(device)
                speed[v].append(n * iters[v] / (time.perf_counter() - t0))
        mem = {v: run({"engine_memory": True, "workload": workload, "variant": v, "device": device})["peak_mib"]
               for v in variants}
        med = {v: statistics.median(speed[v]) for v in variants}

        def ratio(a: str, b: str) -> float:
            return statistics.median(x / y for x, y in zip(speed[a], speed[b]))

        title = {"sinusoid": "MLP 1-40-40-1, meta-batch 25, 5 steps",
                 "conv": "4-conv 64 filters + BN, 5-way 1-shot 15 queries, meta-batch 16, 1 step",
                 "conv-small": "4-conv 32 filters + BN, 5-way 1-shot 5 queries, meta-batch 16, 1 step: omniglot/maml"}[workload]
        print(f"\n  {workload} ({title}; "
              f"{rounds} rounds, median)")
        print(f"  {'variant':13s} {'tasks/s':>9s} {'x hand-loop':>11s} {'x hand-vmap':>11s} {'peak MiB':>9s} "
              f"{'first call s':>12s} {'grad rel err':>12s}")
        for v in variants:
            err = "reference" if v == "hand-loop" else f"{worst[v]:.1e}"
            print(f"  {v:13s} {med[v]:9.1f} {ratio(v, 'hand-loop'):11.2f} {ratio(v, 'hand-vmap'):11.2f} {mem[v]:9.1f} "
                  f"{first[v]:12.1f} {err:>12s}")
        best_hand = "hand-vmap" if med["hand-vmap"] > med["hand-loop"] else "hand-loop"
        ours = [v for v in variants if not v.startswith("hand")]
        best = max(ours, key=lambda v: med[v])
        print(f"  goal 1 (engine overhead gone, >= 0.95): loop/hand-loop {ratio('loop', 'hand-loop'):.2f}, "
              f"vmap/hand-vmap {ratio('vmap', 'hand-vmap'):.2f}")
        target = 1.5 if workload == "sinusoid" else 1.25  # conv-small has no goal of its own: same bar as conv
        print(f"  goal 2 (beyond hand-written, >= {target}): best innerloop ({best}) / best hand-written ({best_hand}) "
              f"{ratio(best, best_hand):.2f}; peak memory {mem[best]:.0f} MiB vs hand-loop {mem['hand-loop']:.0f} MiB")


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
        rule = ALFA(shapes, steps, form="paper") if spec["rule"] == "alfa" else SGD(0.01)
        init, objective = LearnedInit(model), None
    meta = MetaLearner(learner, init, rule, objective=objective, steps=steps, executor=spec["mode"],
                       checkpoint=spec.get("checkpoint", 0), device=device).to(device)
    opt = torch.optim.Adam(meta.parameters(), 1e-3)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        base = torch.cuda.memory_allocated()
    else:
        base = _rss("VmRSS")
    opt.zero_grad(); meta.meta_backward(batch); opt.step()  # warm-up
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        _reset_peak()
    t0 = time.perf_counter()
    for _ in range(spec["iters"]):
        opt.zero_grad(); meta.meta_backward(batch); opt.step()
    sync()
    dt = (time.perf_counter() - t0) / spec["iters"]
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (_rss("VmHWM") - base) / 2**20
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
    ap.add_argument("--only", default="engine,sinusoid,lstm,unroll,omniglot",
                    help="comma-separated sections: engine, sinusoid, lstm, conv, unroll, omniglot")
    ap.add_argument("--compile-conv", action="store_true", help="also time vmap+compile on the conv workload")
    ap.add_argument("--engine-workloads", default="sinusoid,conv,conv-small",
                    help="the engine section's workloads: sinusoid, conv (the issue's), conv-small (omniglot/maml's)")
    ap.add_argument("--data", default=None, help="folder holding omniglot/ (default $INNERLOOP_DATA or ../shared/data)")
    args = ap.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(engine_memory(spec) if spec.get("engine_memory") else measure(spec)))
        return
    q = args.quick
    parts = args.only.split(",")
    import torch

    print(f"device={args.device}  torch {torch.__version__}  threads {torch.get_num_threads()}  cores {os.cpu_count()}"
          + (f"  gpu {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else "")
          + "  (tasks/s: higher is better; peak: MiB above baseline)")
    if "engine" in parts:
        engine(args.device, q, args.compile_conv, tuple(args.engine_workloads.split(",")))
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
