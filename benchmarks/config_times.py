"""Expected training wall time of every shipped config on this machine: ``src/innerloop/configs/times.json``.

    INNERLOOP_DATA=/work/shared/data python benchmarks/config_times.py
    python benchmarks/config_times.py --only sinusoid/ --budget 10 --threads 2   # re-time some, keep the others

For each shipped config (``innerloop configs``), as shipped: build it (its data, model, rule, executor), run 1-2
warm-up meta-training iterations, then time iterations until ``--budget`` seconds have passed (at least 2, at most
``--max-iterations``; a config whose first iteration takes over twice the budget is estimated from it alone), each
config in a fresh process, once per ``--threads`` count (default 1 and 2: on a busy machine two OpenMP threads can
make small models 40x slower than one; the faster count is kept). The lower quartile of the seconds per iteration
(on a shared machine the quieter iterations are the closer to an unloaded one; the median is recorded too) times
the config's ``train.iterations`` is its estimate: training iterations only, not data loading, checkpoints or the
final evaluation. A config whose dataset (or UAP victim model) is not on this machine is recorded as
``"needs": "<dataset>"`` without timing; one with ``train.iterations = 0`` (an untrained baseline) as 0 s.

``innerloop configs`` reads the file and shows the estimates ("~9 min"), scaled to the config's current
``train.iterations``. The numbers are approximate: a few iterations on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "src" / "innerloop" / "configs" / "times.json"
NOTE = ("Approximate: a few meta-training iterations per config (after warm-up), timed with 1 and 2 intra-op threads "
        "(the faster counts) on a 2-core machine shared with other work (load_avg: its load then), and extrapolated "
        "to train.iterations; training only (no data loading, checkpoints or final evaluation). Written by "
        "benchmarks/config_times.py; rerun it to measure your machine.")


def required_data(cfg) -> list[tuple[str, str, str]]:
    """``(dataset, root, split)`` a config reads: episodes' dataset (and eval_dataset), mixtures' sources."""
    t = cfg.task
    if t.family == "episodes":
        out = [(t.dataset, t.root, t.train_split)]
        out.append((t.eval_dataset, t.eval_root, t.eval_split) if t.eval_dataset else (t.dataset, t.root, t.eval_split))
        return out
    if t.family in ("incongruous", "uap"):
        return [(s, "", split) for s in dict.fromkeys([*t.sources, *t.eval_sources]) for split in ("train", "test")]
    return []


def missing(cfg) -> str | None:
    """What the config needs and this machine lacks (a dataset's files, a UAP victim), or None."""
    from innerloop.build import data_root, victims_root
    from innerloop.data import reader
    from innerloop.errors import UserError

    if cfg.task.family == "records":  # Meta-Dataset record folders under task.records / $INNERLOOP_RECORDS
        import os

        root = Path(cfg.task.records or os.environ.get("INNERLOOP_RECORDS", "") or "/nonexistent")
        absent = [s for s in dict.fromkeys([*cfg.task.sources, *cfg.task.eval_sources])
                  if not (root / s / "dataset_spec.json").is_file()]
        return f"Meta-Dataset records of {' and '.join(absent[:2])}{' and more' if len(absent) > 2 else ''}" \
            if absent else None
    lacking: list[str] = []
    for dataset, root, split in required_data(cfg):
        if dataset in lacking:
            continue
        try:
            files = reader(dataset).source_files(Path(data_root(dataset, root)), split)
            if not all(Path(f).exists() for f in files):
                lacking.append(dataset)
        except (UserError, OSError, ValueError, KeyError):
            lacking.append(dataset)
    if lacking:
        return " and ".join(lacking)
    if cfg.task.family == "uap":
        for source in dict.fromkeys([*cfg.task.sources, *cfg.task.eval_sources]):
            if not (victims_root(cfg) / source / "victim.pt").is_file():
                return f"a {source} victim (innerloop victim train --dataset {source})"
    return None


def time_config(name: str, budget: float, max_iterations: int) -> dict[str, Any]:
    """Build ``name`` as shipped and time its meta-training iterations (the training loop's own calls)."""
    import torch

    from innerloop.build import DTYPES, build
    from innerloop.config import load

    torch.set_flush_denormal(True)  # as the command line does
    cfg = load(name)
    t0 = time.perf_counter()
    tasks, meta = build(cfg)
    build_s = time.perf_counter() - t0
    params = [p for p in meta.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params or [torch.zeros(1, requires_grad=True)], lr=cfg.train.meta_lr)
    dtype, device = DTYPES[cfg.train.dtype], torch.device(cfg.train.device)

    def iteration(it: int) -> float:
        start = time.perf_counter()
        batch = tasks.train_batch(cfg.train.meta_batch, cfg.train.seed, it, dtype=dtype, device=device)
        carry = None
        for a, b in meta.spans():
            opt.zero_grad(set_to_none=True)
            _, _, carry = meta.meta_backward_span(batch, it // cfg.train.epoch_length, a, b, carry)
            if cfg.train.clip_grad > 0:
                for p in params:
                    if p.grad is not None:
                        p.grad.clamp_(-cfg.train.clip_grad, cfg.train.clip_grad)
            opt.step()
        return time.perf_counter() - start

    warm = [iteration(0)]
    if warm[0] >= 2 * budget:  # a slow config: its one-off costs are small beside one iteration; time no more
        return {"seconds_per_iteration": warm[0], "median_s": round(warm[0], 4), "timed_iterations": 0,
                "warmup_iterations": 1, "build_s": round(build_s, 1), "executor": meta.mode}
    if warm[0] < 10:  # cheap: a second warm-up (vmap/allocator caches settle)
        warm.append(iteration(1))
    times: list[float] = []
    while len(times) < max_iterations:
        times.append(iteration(len(warm) + len(times)))
        spent = sum(times)
        if (spent >= budget and len(times) >= 2) or spent >= 3 * budget:
            break
    # the lower quartile: on a shared machine the quieter iterations are the closer to an unloaded one
    quartile = statistics.quantiles(times, n=4)[0] if len(times) >= 4 else min(times)
    return {"seconds_per_iteration": quartile, "median_s": round(statistics.median(times), 4),
            "timed_iterations": len(times), "warmup_iterations": len(warm), "build_s": round(build_s, 1),
            "executor": meta.mode}


def machine() -> str:
    """CPU model, cores and torch, e.g. 'AMD EPYC, 2 cores, torch 2.x, Linux'."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, {platform.system()}"


def time_in_child(name: str, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`time_config` in a fresh process with ``threads`` intra-op threads; ``{"error": ...}`` on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--child", name, "--budget", str(args.budget),
           "--max-iterations", str(args.max_iterations)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=6 * args.budget + 300, env=env)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def merge(entry: dict[str, Any], old: dict[str, Any] | None, threads: int, run: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with this run's timing under ``threads`` threads added to the earlier ones of the same config
    (``by_threads``); the estimate is the fastest thread count's. On a busy machine 2 threads can be 40x slower
    than 1 on small models (OpenMP threads waiting for each other's time slices), so both are measured."""
    by = dict((old or {}).get("by_threads", {})) if (old or {}).get("iterations") == entry["iterations"] else {}
    if "error" in run:
        entry.setdefault("errors", {})[str(threads)] = run["error"]
    else:
        by[str(threads)] = {"seconds_per_iteration": round(run["seconds_per_iteration"], 4), "load_avg": run["load_avg"],
                            **{k: run[k] for k in ("median_s", "timed_iterations", "warmup_iterations", "executor")}}
    if by:
        best = min(by, key=lambda t: by[t]["seconds_per_iteration"])
        entry.update(by_threads=by, threads=int(best), seconds_per_iteration=by[best]["seconds_per_iteration"],
                     total_s=round(by[best]["seconds_per_iteration"] * entry["iterations"]))
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help="comma-separated substrings: time only the configs whose name has one")
    p.add_argument("--budget", type=float, default=15.0, help="seconds of timed iterations per config and thread count")
    p.add_argument("--max-iterations", type=int, default=40, help="timed iterations at most per config")
    p.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts to time each config with "
                                                     "(the fastest is the estimate; earlier runs' counts are kept)")
    p.add_argument("--out", type=Path, default=OUT, help="the JSON file (entries of configs not timed are kept)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print(json.dumps(time_config(args.child, args.budget, args.max_iterations)))
        return 0

    from innerloop.config import list_shipped, load

    if not os.environ.get("INNERLOOP_VICTIMS") and (REPO / "results" / "victims").is_dir():
        os.environ["INNERLOOP_VICTIMS"] = str(REPO / "results" / "victims")  # the committed UAP victims
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    entries: dict[str, Any] = dict(old.get("configs", {}))
    wanted = [s for s in (args.only or "").split(",") if s]
    for name in list_shipped():
        if wanted and not any(s in name for s in wanted):
            continue
        cfg = load(name)
        entry: dict[str, Any] = {"iterations": cfg.train.iterations}
        need = missing(cfg)
        if need:
            entry["needs"] = need
        elif cfg.train.iterations == 0:
            entry.update(seconds_per_iteration=0.0, total_s=0.0)
        else:
            for threads in [int(t) for t in args.threads.split(",")]:
                load_avg = round(os.getloadavg()[0], 1)  # other work on the machine when it was timed
                run = {**time_in_child(name, threads, args), "load_avg": load_avg}
                entry = merge(entry, entries.get(name), threads, run)
        entries[name] = entry
        print(f"{name:50s} {json.dumps(entry)}", flush=True)
        write(args.out, entries, args)  # after every config: an interrupted run keeps what it measured
    print(f"wrote {args.out}")
    return 0


def write(path: Path, entries: dict[str, Any], args: argparse.Namespace) -> None:
    """The times file: the note, date, machine, command and one entry per config."""
    record = {"note": NOTE, "date": datetime.date.today().isoformat(), "machine": machine(),
              "command": "INNERLOOP_DATA=<data> python benchmarks/config_times.py"
                         + (f" --only {args.only}" if args.only else "") + f" --budget {args.budget:g} "
                         f"--threads {args.threads}",
              "configs": {k: entries[k] for k in sorted(entries)}}
    path.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
