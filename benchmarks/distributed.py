"""Data-parallel meta-training on one machine: 1 process x P threads against P processes x 1 thread (P = 2).

    python benchmarks/distributed.py --out /tmp/bench-distributed                      # both workloads, 3 rounds
    python benchmarks/distributed.py --out /tmp/bench-distributed --only sinusoid --iterations 60 --rounds 3
    python benchmarks/distributed.py --out /tmp/bench-distributed --only conv --iterations 20 --rounds 3 \\
        --data /work/shared/data --cache /tmp/bench-distributed/cache
    python benchmarks/distributed.py --out /tmp/bench-distributed-smoke --iterations 6 --warmup 2 --rounds 1  # smoke

Workloads (float32, the shipped dtype; the library's own ``innerloop.train.train``, as ``innerloop train`` and
``innerloop train --nproc P`` run it):

* ``sinusoid``: ``sinusoid/alfa-maml`` as shipped (vmap executor; MLP 1-40-40-1, meta-batch 25, 10+10 points,
  5 second-order inner steps, ALFA);
* ``conv``: ``omniglot/maml`` as shipped (loop executor; 4-conv 32 filters with batch norm, 5-way 1-shot 5 queries,
  meta-batch 16, 1 second-order step) but with ``train.workers = 1`` in every arm (one task thread per process);
  data from ``--data`` (sets ``$INNERLOOP_DATA``), decoded once into the cache (``--cache`` sets
  ``$INNERLOOP_CACHE``) before anything is timed.

Arms, each started the same way (``torch.multiprocessing.spawn``; a fresh interpreter per process, also for one
process): ``1 proc x P threads`` (``torch.set_num_threads(P)``, no process group), ``1 proc x 1 thread`` (the
base of the scaling efficiency), ``P procs x 1 thread`` (gloo process group over a FileStore; every rank runs
``train``, exactly as under ``torchrun``) and, for conv only (drop it with ``--no-task-threads``), ``1 proc x P
task threads`` (``train.workers = P``: the shipped ``workers = 0`` on a P-core machine, the loop's tasks in P
threads). The arms run interleaved in ``--rounds`` rounds (the order rotated every round); every number printed
is the median over rounds, and every ratio is computed per round (arms measured minutes apart on this noisy
machine) and then its median taken.

Measured in each process, by wrapping the library's functions from outside (the library itself is not edited):
the start of every iteration (``tasks.train_batch``, also timed: the batch is drawn whole on every rank), its end
(``Progress.update``, called after the optimiser step), every ``innerloop.distributed.reduce_step`` and the
``torch.distributed.all_reduce`` inside it. Throughput counts iterations ``--warmup``+1 .. ``--iterations`` of
rank 0 (the ranks are in lock-step). Each iteration splits into ``data`` (drawing the batch), ``reduce``
(``reduce_step``: packing the gradients, the all-reduce, unpacking) and ``compute`` (the rest: inner loops,
meta-backward, finiteness checks, Adam). After training, the P-process arm times a bare ``all_reduce`` of a
buffer of the size ``reduce_step`` sends, ``--allreduce-calls`` times back to back: the in-training all-reduce
minus that is time spent waiting for the slower rank. Peak memory is each process's ``VmHWM`` (peak resident
set, /proc/self/status) at its end: start-up, data and training included. ``setup s`` runs from the spawned
process's entry (torch already imported by ``spawn``) to the model and data built (and the process group joined).

The 1-minute load average is printed before and after each workload. Another busy process on these 2 cores
distorts everything, the P-thread arms most (the conv workload at 2 intra-op threads was seen 10-40x slower
while a training job ran beside it): compare only numbers taken on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

WORKLOADS = {
    "sinusoid": ("sinusoid/alfa-maml", []),
    "conv": ("omniglot/maml", ["train.workers=1"]),
}
TITLES = {
    "sinusoid": "sinusoid/alfa-maml: MLP 1-40-40-1, meta-batch 25, 5 second-order steps, ALFA",
    "conv": "omniglot/maml: 4-conv 32 filters + BN, 5-way 1-shot 5 queries, meta-batch 16, 1 second-order step",
}
DEFAULT_ITERATIONS = {"sinusoid": 60, "conv": 20}


def _vm(field: str) -> int:
    """KiB of a ``/proc/self/status`` field (``VmHWM``: peak resident set), or the getrusage peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _instrument(rec: dict) -> None:
    """Wrap the library's functions (in this process only) to time every iteration and every all-reduce."""
    import torch
    import torch.distributed as dist

    import innerloop.distributed as D
    import innerloop.train as T

    state = {"it": None, "in_reduce": False}
    build, reduce_step, all_reduce, progress = T.build, D.reduce_step, dist.all_reduce, T.Progress

    def timed_build(cfg):
        tasks, meta = build(cfg)
        draw = tasks.train_batch
        rec["meta_parameters"] = sum(p.numel() for p in meta.parameters() if p.requires_grad)
        rec["t_built"] = time.perf_counter()

        def train_batch(n, seed, iteration, *a, **kw):
            t0 = time.perf_counter()
            out = draw(n, seed, iteration, *a, **kw)
            state["it"] = iteration
            rec["iters"][iteration] = {"start": t0, "data": time.perf_counter() - t0, "reduce": 0.0, "allreduce": 0.0}
            return out

        tasks.train_batch = train_batch  # an instance attribute: shadows the method for this object only
        return tasks, meta

    def timed_reduce_step(*a, **kw):
        t0 = time.perf_counter()
        state["in_reduce"] = True
        try:
            return reduce_step(*a, **kw)
        finally:
            state["in_reduce"] = False
            rec["iters"][state["it"]]["reduce"] += time.perf_counter() - t0

    def timed_all_reduce(tensor, *a, **kw):
        if not state["in_reduce"]:
            return all_reduce(tensor, *a, **kw)
        t0 = time.perf_counter()
        try:
            return all_reduce(tensor, *a, **kw)
        finally:
            rec["iters"][state["it"]]["allreduce"] += time.perf_counter() - t0
            rec["buffer_numel"], rec["buffer_dtype"] = tensor.numel(), str(tensor.dtype).replace("torch.", "")
            rec["buffer_bytes"] = tensor.element_size()

    class TimedProgress(progress):
        def update(self, it, loss):  # after the optimiser step of iteration it - 1 (0-based)
            rec["iters"][it - 1]["end"] = time.perf_counter()
            super().update(it, loss)

    T.build, D.reduce_step, T.Progress = timed_build, timed_reduce_step, TimedProgress
    dist.all_reduce = timed_all_reduce
    torch.set_flush_denormal(True)  # as the command line does


def _bare_all_reduce(numel: int, dtype: str, calls: int) -> dict:
    """Seconds per back-to-back all_reduce of a buffer like reduce_step's (after 10 untimed calls)."""
    import torch
    import torch.distributed as dist

    buf = torch.zeros(numel, dtype=getattr(torch, dtype))
    for _ in range(10):
        dist.all_reduce(buf)
    dist.barrier()
    each = []
    t_all = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        each.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    return {"median_s": statistics.median(each), "mean_s": total / calls, "calls": calls}


def _worker(rank: int, spec: dict) -> None:
    """One process of one arm: set the threads, join the group (P processes), train, write what it measured."""
    t_enter = time.perf_counter()
    import torch

    torch.set_num_threads(spec["threads"])
    import torch.distributed as dist

    from innerloop import config as C
    from innerloop.train import train

    rec: dict = {"rank": rank, "iters": {}, "threads": torch.get_num_threads()}
    _instrument(rec)
    world = spec["procs"]
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{spec['store']}", rank=rank, world_size=world)
    try:
        t0 = time.perf_counter()
        summary = train(C.load(spec["config"], spec["sets"]), spec["run"], progress=False)
        rec["train_s"] = time.perf_counter() - t0
        rec["executor"] = summary["executor"]
        if world > 1:
            rec["bare"] = _bare_all_reduce(rec["buffer_numel"], rec["buffer_dtype"], spec["allreduce_calls"])
    finally:
        if world > 1:
            dist.destroy_process_group()
    rec["setup_s"] = rec.pop("t_built") - t_enter  # imports, process group, data and model (torch: spawn imported it)
    rec["peak_kib"] = _vm("VmHWM")
    Path(spec["result"].format(rank=rank)).write_text(json.dumps(rec))


def run_arm(out: Path, workload: str, arm: dict, rnd: int, iterations: int, allreduce_calls: int) -> list[dict]:
    """Spawn one arm's processes; returns each rank's record."""
    import torch.multiprocessing as mp

    config, sets = WORKLOADS[workload]
    name = f"{workload}-{arm['key']}-round{rnd}"
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)  # this benchmark's own scratch from an earlier command
    folder.mkdir(parents=True)
    sets = [*sets, *arm["sets"], 'train.dtype="float32"', f"train.iterations={iterations}",
            f"train.log_every={iterations}", f"train.checkpoint_every={iterations + 1}", "train.eval_every=0"]
    spec = {"config": config, "sets": sets, "run": str(folder / "run"), "threads": arm["threads"],
            "procs": arm["procs"], "store": str(folder / "store"), "result": str(folder / "rank{rank}.json"),
            "allreduce_calls": allreduce_calls}
    mp.spawn(_worker, args=(spec,), nprocs=arm["procs"], join=True)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(arm["procs"])]


def summarise(rec: dict, warmup: int, batch: int) -> dict:
    """Steady-state numbers of one process: tasks/s over iterations warmup+1 .. N, mean ms per iteration."""
    iters = [rec["iters"][k] for k in sorted(rec["iters"], key=int)][warmup:]
    iters = [i for i in iters if "end" in i]  # a non-finite step (no optimiser step) would have no end
    span = iters[-1]["end"] - iters[0]["start"]
    n = len(iters)
    ms = lambda key: 1e3 * sum(i[key] for i in iters) / n  # noqa: E731
    total = 1e3 * sum(i["end"] - i["start"] for i in iters) / n
    return {"tasks_per_s": batch * n / span, "timed": n, "iter_ms": 1e3 * span / n, "data_ms": ms("data"),
            "reduce_ms": ms("reduce"), "allreduce_ms": ms("allreduce"),
            "compute_ms": total - ms("data") - ms("reduce"),
            "peak_mib": rec["peak_kib"] / 1024, "setup_s": rec["setup_s"], "executor": rec.get("executor", "?"),
            "bare_ms": 1e3 * rec["bare"]["median_s"] if "bare" in rec else None,
            "bare_mean_ms": 1e3 * rec["bare"]["mean_s"] if "bare" in rec else None,
            "buffer_numel": rec.get("buffer_numel"), "buffer_dtype": rec.get("buffer_dtype"),
            "buffer_bytes": rec.get("buffer_bytes"), "meta_parameters": rec.get("meta_parameters")}


def med(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def bench(workload: str, args, out: Path) -> dict:
    from innerloop import config as C

    config, sets = WORKLOADS[workload]
    cfg = C.load(config, sets)
    batch, P = cfg.train.meta_batch, args.procs
    iterations = args.iterations or DEFAULT_ITERATIONS[workload]
    warmup = min(args.warmup, iterations - 1)
    if warmup != args.warmup:
        print(f"  (--warmup lowered to {warmup}: at least one timed iteration of {iterations})")
    arms = [
        {"key": f"1x{P}", "label": f"1 proc x {P} threads", "procs": 1, "threads": P, "sets": []},
        {"key": "1x1", "label": "1 proc x 1 thread", "procs": 1, "threads": 1, "sets": []},
        {"key": f"{P}x1", "label": f"{P} procs x 1 thread", "procs": P, "threads": 1, "sets": []},
    ]
    if workload == "conv" and not args.no_task_threads:
        arms.append({"key": f"1x{P}w", "label": f"1 proc x {P} task threads [workers={P}]", "procs": 1,
                     "threads": P, "sets": [f"train.workers={P}"]})
    if workload == "conv":
        from innerloop.build import build_tasks

        t0 = time.perf_counter()
        build_tasks(cfg)  # decode Omniglot into the cache once, before any arm is timed
        print(f"  data ready ({time.perf_counter() - t0:.1f} s: the dataset cache, built or checked)")
    print(f"  load average (1 min) before: {os.getloadavg()[0]:.2f}")
    base, multi = arms[0]["key"], arms[2]["key"]
    res: dict[str, list] = {a["key"]: [] for a in arms}  # per round: [rank summaries]
    for rnd in range(args.rounds):
        order = arms[rnd % len(arms):] + arms[:rnd % len(arms)]
        for arm in order:
            t0 = time.perf_counter()
            recs = run_arm(out, workload, arm, rnd, iterations, args.allreduce_calls)
            res[arm["key"]].append([summarise(r, warmup, batch) for r in recs])
            s = res[arm["key"]][-1][0]
            print(f"  round {rnd + 1}/{args.rounds}  {arm['label']:38s} {s['tasks_per_s']:8.1f} tasks/s  "
                  f"({time.perf_counter() - t0:.0f} s wall)", flush=True)

    def per_round(key: str, f: str = "tasks_per_s") -> list[float]:
        return [r[0][f] for r in res[key]]

    def ratio(a: str, b: str, scale: float = 1.0) -> list[float]:
        return [x / (scale * y) for x, y in zip(per_round(a), per_round(b))]

    print(f"  load average (1 min) after: {os.getloadavg()[0]:.2f}")
    print(f"\n  {TITLES[workload]}")
    print(f"  executor {res[base][0][0]['executor']}; iterations {warmup + 1}..{iterations} timed of {iterations}, "
          f"{args.rounds} round(s), medians over rounds; tasks/s from rank 0 (ranks are in lock-step)")
    print(f"  {'arm':40s} {'tasks/s':>8s} {f'x 1p{P}t':>7s} {'ms/iter':>8s} {'peak RSS MiB/proc':>18s} "
          f"{'setup s':>7s}")
    for a in arms:
        k = a["key"]
        peaks = [med([r[i]["peak_mib"] for r in res[k]]) for i in range(a["procs"])]
        peak = " + ".join(f"{p:.0f}" for p in peaks)
        print(f"  {a['label']:40s} {med(per_round(k)):8.1f} {med(ratio(k, base)):7.2f} "
              f"{med(per_round(k, 'iter_ms')):8.1f} {peak:>18s} {med(per_round(k, 'setup_s')):7.1f}")
    eff, speed = ratio(multi, "1x1", P), ratio(multi, base)
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"  scaling efficiency  {P}p1t / ({P} x 1p1t) = {med(eff):.2f}   (rounds: {fmt(eff)})")
    print(f"  speed-up            {P}p1t / 1p{P}t       = {med(speed):.2f}   (rounds: {fmt(speed)})")
    if f"1x{P}w" in res:
        w = ratio(multi, f"1x{P}w")
        print(f"  against the task threads  {P}p1t / 1p{P}t[workers={P}] = {med(w):.2f}   (rounds: {fmt(w)})")

    print(f"\n  where the time goes (ms per iteration, mean over the timed iterations, median over rounds):")
    print(f"  {'arm / rank':40s} {'iter':>7s} {'data':>7s} {'compute':>8s} {'reduce':>7s} {'all_red':>7s} "
          f"{'bare':>6s} {'wait':>6s}")
    for a in arms:
        k = a["key"]
        for i in range(a["procs"]):
            g = lambda f: med([r[i][f] for r in res[k]])  # noqa: E731
            label = a["label"] + (f" / rank {i}" if a["procs"] > 1 else "")
            if a["procs"] > 1:
                tail = (f"{g('reduce_ms'):7.2f} {g('allreduce_ms'):7.2f} {g('bare_ms'):6.2f} "
                        f"{g('allreduce_ms') - g('bare_ms'):6.2f}")
            else:
                tail = f"{'-':>7s} {'-':>7s} {'-':>6s} {'-':>6s}"
            print(f"  {label:40s} {g('iter_ms'):7.1f} {g('data_ms'):7.2f} {g('compute_ms'):8.1f} {tail}")
    r0 = [r[0] for r in res[multi]]
    numel, params = r0[0]["buffer_numel"], r0[0]["meta_parameters"]
    one = med([r[0]["iter_ms"] for r in res["1x1"]])
    c1 = med([r[0]["compute_ms"] for r in res["1x1"]])
    cP = med([max(x["compute_ms"] for x in r) for r in res[multi]])
    red = med([r["reduce_ms"] for r in r0])
    kib = numel * r0[0]["buffer_bytes"] / 1024
    print(f"  all-reduce buffer: {numel} {r0[0]['buffer_dtype']} ({params} meta-parameters + masks + {batch} losses "
          f"+ 1 flag), {kib:.0f} KiB; bare all_reduce {med([r['bare_ms'] for r in r0]):.2f} ms median "
          f"({med([r['bare_mean_ms'] for r in r0]):.2f} ms mean) over {args.allreduce_calls} calls")
    it_multi = med(per_round(multi, "iter_ms"))
    print(f"  ideal {P}p1t iteration (1p1t / {P}): {one / P:.1f} ms; measured {it_multi:.1f} ms, of which the slowest "
          f"rank's compute is x{cP / (c1 / P):.2f} its ideal (1p1t compute / {P}) and reduce_step {red:.2f} ms "
          f"({100 * red / it_multi:.1f}%); the batch is drawn whole on every rank")
    return {"workload": workload, "config": config, "sets": sets, "iterations": iterations, "warmup": warmup,
            "rounds": args.rounds, "arms": {a["key"]: {"label": a["label"], "rounds": res[a["key"]]} for a in arms}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="scratch folder (run directories, per-process records)")
    ap.add_argument("--only", default="sinusoid,conv", help="comma-separated workloads: sinusoid, conv")
    ap.add_argument("--iterations", type=int, default=None,
                    help=f"meta-iterations per arm (default {DEFAULT_ITERATIONS['sinusoid']} sinusoid, "
                         f"{DEFAULT_ITERATIONS['conv']} conv)")
    ap.add_argument("--warmup", type=int, default=5, help="first iterations not timed")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all arms")
    ap.add_argument("--procs", type=int, default=2, help="P: 1 process x P threads vs P processes x 1 thread")
    ap.add_argument("--allreduce-calls", type=int, default=200, help="bare all_reduce calls timed after training")
    ap.add_argument("--no-task-threads", action="store_true",
                    help="conv: skip the 1-process arm with P task threads (train.workers = P)")
    ap.add_argument("--data", default="/work/shared/data", help="folder holding omniglot/ (sets $INNERLOOP_DATA)")
    ap.add_argument("--cache", default=None, help="dataset cache folder (sets $INNERLOOP_CACHE; default: as set)")
    args = ap.parse_args()
    parts = [p for p in args.only.split(",") if p]
    unknown = [p for p in parts if p not in WORKLOADS]
    if unknown:
        ap.error(f"--only: unknown workload(s) {', '.join(unknown)} (choose from {', '.join(WORKLOADS)})")
    if args.procs < 2:
        ap.error("--procs must be >= 2")
    os.environ["INNERLOOP_DATA"] = str(Path(args.data).resolve())  # inherited by the spawned processes
    if args.cache:
        os.environ["INNERLOOP_CACHE"] = str(Path(args.cache).resolve())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    print(f"# python benchmarks/distributed.py {' '.join(sys.argv[1:])}")
    print(f"cpu {platform.processor() or platform.machine()}  cores {os.cpu_count()}  torch {torch.__version__}  "
          f"gloo {torch.distributed.is_gloo_available()}  float32  (tasks/s: higher is better)")
    results = []
    for w in parts:
        print(f"\n== {w}: {TITLES[w]} ==")
        results.append(bench(w, args, out))
    (out / "summary.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
