"""Fault injection: kill meta-training runs with SIGKILL, resume them, and compare with an uninterrupted run.

    python benchmarks/faults.py --runs 50 --out /tmp/faults-sinusoid > results/benchmarks/faults-cpu.txt
    python benchmarks/faults.py --runs 5 --config omniglot/maml --data ../shared/data --out /tmp/faults-omniglot \\
        --set train.iterations=40 --set train.meta_batch=8 >> results/benchmarks/faults-cpu.txt

For each run, ``innerloop train`` (the real command line, in a child process) is killed one to three times and
restarted with ``--resume`` until it finishes. Each kill is one of

- ``time``: SIGKILL from outside after a random delay (anywhere: start-up, an iteration, a log line, a write);
- ``mid-write``: the child kills itself halfway through writing its N-th checkpoint (a torn temporary file);
- ``before-rename``: the child kills itself with its N-th checkpoint written and synced but not yet renamed.

After every kill the run directory must hold either no checkpoint or one that loads; at the end the run must
equal the uninterrupted reference bit for bit: every tensor of the checkpoint (meta-parameters, optimiser
state, RNG states), the bookkeeping in it, ``metrics.jsonl`` line for line (timings aside), no temporary file
left, and the same evaluation. Prints one line per run and ``N killed, N bit-identical, N corrupt``; exits 1
unless every run is bit-identical with none corrupt.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

MODES = ("time", "mid-write", "before-rename")
TIMING_KEYS = {"tasks_per_s", "elapsed_s", "eval_s"}
IGNORED_STATE = {"elapsed"}  # training wall time: the only thing a resumed run may legitimately differ in


def _child(mode: str, nth: int, argv: list[str]) -> int:
    """Run ``innerloop ARGV`` in this process, killing it with SIGKILL during its ``nth`` checkpoint write."""
    from innerloop import checkpoint

    calls = [0]

    def target(name: str) -> bool:
        return os.path.basename(str(name)).startswith(checkpoint.CHECKPOINT + ".")

    if mode == "mid-write":
        real_save = torch.save

        def save(obj: Any, f: Any, *a: Any, **k: Any) -> None:
            if hasattr(f, "write") and target(getattr(f, "name", "")):
                calls[0] += 1
                if calls[0] == nth:
                    buf = io.BytesIO()
                    real_save(obj, buf, *a, **k)
                    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            real_save(obj, f, *a, **k)

        torch.save = save
    elif mode == "before-rename":
        real_replace = os.replace

        def replace(src: Any, dst: Any, *a: Any, **k: Any) -> None:
            if os.path.basename(str(dst)) == checkpoint.CHECKPOINT:
                calls[0] += 1
                if calls[0] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst, *a, **k)

        os.replace = replace
    from innerloop.cli import main

    return main(argv)


def _train_cmd(config: str, out: Path, sets: list[str], resume: bool) -> list[str]:
    argv = ["train", config, "--out", str(out), "--quiet", "--no-eval"]
    for s in sets:
        argv += ["--set", s]
    return argv + (["--resume-or-start"] if resume else [])


def _spawn(argv: list[str], mode: str | None = None, nth: int = 0) -> subprocess.Popen:
    head = [sys.executable, __file__, "--child", mode, str(nth), "--"] if mode else [sys.executable, "-m", "innerloop"]
    return subprocess.Popen(head + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _checkpoint_readable(run: Path) -> bool:
    """No checkpoint, or one that loads with ``weights_only=True`` and holds a state."""
    ck = run / "checkpoint.pt"
    if not ck.exists():
        return True
    try:
        state = torch.load(ck, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(state, dict) and {"meta", "optimizer", "iteration"} <= set(state)


def _metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bytes (so -0.0 differs from 0.0 and equal NaN payloads match)."""
    return t.detach().cpu().reshape(-1).contiguous().view(torch.uint8)


def _same(a: Any, b: Any, where: str = "") -> str | None:
    """The first place where two nested checkpoint states differ bit for bit (None if they do not)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return where
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bytes(a), _bytes(b))
        return None if same else where
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) - IGNORED_STATE != set(b) - IGNORED_STATE:
            return f"{where} keys"
        for k in sorted(set(a) - IGNORED_STATE, key=str):
            diff = _same(a[k], b[k], f"{where}.{k}" if where else str(k))
            if diff:
                return diff
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where} length"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _same(x, y, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return None  # NaN bookkeeping (e.g. no best window yet)
    return None if a == b else where


def compare(ref: Path, run: Path, evaluate: bool) -> str | None:
    """None if ``run`` equals ``ref`` bit for bit; else what differs."""
    a = torch.load(ref / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    diff = _same(a, b)
    if diff:
        return f"checkpoint differs at {diff}"
    ma, mb = _metrics(ref), _metrics(run)
    if ma != mb:
        i = next((i for i, (x, y) in enumerate(zip(ma, mb)) if x != y), min(len(ma), len(mb)))
        return f"metrics.jsonl differs at line {i + 1} ({len(ma)} vs {len(mb)} lines)"
    left = sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))
    if left:
        return f"temporary files left behind: {left}"
    if evaluate:
        from innerloop.evaluate import evaluate_run

        ea, eb = evaluate_run(ref), evaluate_run(run)
        if ea["mean"] != eb["mean"] or list(ea.get("values", [])) != list(eb.get("values", [])):
            return f"evaluation differs ({ea['mean']} vs {eb['mean']})"
    return None


def _saved_iteration(run: Path) -> int:
    """The iteration of the checkpoint on disk (0 if none)."""
    try:
        return int(torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["iteration"])
    except Exception:
        return 0


def killed_run(index: int, config: str, sets: list[str], run: Path, ref: Path, duration: float, iterations: int,
               every: int, seed: int, evaluate: bool) -> dict[str, Any]:
    """Kill one run 1-3 times (modes cycle with ``index`` so every mode is exercised), resume it to the end,
    and compare it with ``ref``. Each kill point is drawn from the work that is left: a random moment of the
    remaining run time, or one of the checkpoints still to be written. A kill that misses (the process finished
    first) ends the run's kills, unless it had none yet (then the run starts over); a missed time kill also
    shortens the run time the next moments are drawn from to the one just observed, so a reference timed on a
    busier machine (parallel tests) cannot make every time kill land after the end."""
    rng = random.Random(seed * 100003 + index)
    want = rng.randint(1, 3)
    kills, corrupt, modes, at, starts = 0, 0, [], [], 0
    while True:
        resume = run.exists()
        argv = _train_cmd(config, run, sets, resume)
        starts += 1
        if starts > 20:
            return {"run": index, "kills": kills, "modes": modes, "at": at, "corrupt": corrupt,
                    "error": "did not finish"}
        if kills < want:
            mode = MODES[(index + kills) % len(MODES)]
            done = _saved_iteration(run) if resume else 0
            if mode == "time":
                t0 = time.perf_counter()
                p = _spawn(argv)
                time.sleep(rng.uniform(0.0, duration * (1.0 - 0.8 * done / iterations)))
                if p.poll() is None:
                    p.kill()
                else:  # missed: the machine is faster now than when the reference ran; draw from what was seen
                    duration = min(duration, (time.perf_counter() - t0) / (1.0 - 0.8 * done / iterations))
            else:  # checkpoints still to come: every multiple of `every` after `done`, and the last iteration
                left = len([i for i in range(done + 1, iterations) if i % every == 0]) + 1
                p = _spawn(argv, mode, rng.randint(1, left))
            out, err = p.communicate()
            if p.returncode == -signal.SIGKILL:
                kills += 1
                modes.append(mode)
                at.append(_saved_iteration(run))
                corrupt += not _checkpoint_readable(run)
                continue
        else:
            p = _spawn(argv)
            out, err = p.communicate()
        if p.returncode != 0:
            return {"run": index, "kills": kills, "modes": modes, "at": at, "corrupt": corrupt,
                    "error": f"exit {p.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"}
        if kills:
            break
        shutil.rmtree(run)  # finished before its first kill landed: start over, so every run is killed
    diff = compare(ref, run, evaluate)
    return {"run": index, "kills": kills, "modes": modes, "at": at, "corrupt": corrupt, "identical": diff is None,
            **({"error": diff} if diff else {})}


def _iterations_and_checkpoint_every(sets: list[str], config: str) -> tuple[int, int]:
    from innerloop.config import load

    cfg = load(config, sets)
    return cfg.train.iterations, cfg.train.checkpoint_every


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1], int(argv[2]), argv[4:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="sinusoid/alfa-maml")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--out", required=True, help="scratch folder for the runs (emptied first)")
    p.add_argument("--data", default=None, help="dataset folder ($INNERLOOP_DATA)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-eval", action="store_true", help="compare checkpoints and metrics only")
    args = p.parse_args(argv)
    if args.data:
        os.environ["INNERLOOP_DATA"] = str(Path(args.data).resolve())
    # checkpoint_every deliberately not a multiple of log_every: the partially filled log window must survive
    sets = ["train.iterations=200", "train.log_every=10", "train.checkpoint_every=7", "eval.tasks=100", *args.set]
    scratch = Path(args.out)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ref = scratch / "reference"
    t0 = time.perf_counter()
    p0 = _spawn(_train_cmd(args.config, ref, sets, False))
    _, err = p0.communicate()
    if p0.returncode != 0:
        print(f"reference run failed: {err.strip()[-500:]}", file=sys.stderr)
        return 2
    duration = time.perf_counter() - t0
    iterations, every = _iterations_and_checkpoint_every(sets, args.config)
    print(f"# faults: {args.config} {' '.join(sets)}; {args.runs} runs, seed {args.seed}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; reference run {duration:.1f} s "
          f"({iterations} iterations, a checkpoint every {every})", flush=True)
    killed = identical = corrupt = failed = 0
    mode_counts = {m: 0 for m in MODES}
    for i in range(args.runs):
        r = killed_run(i, args.config, sets, scratch / f"run{i:03d}", ref, duration, iterations, every, args.seed,
                       not args.no_eval)
        killed += r["kills"] > 0
        identical += bool(r.get("identical"))
        corrupt += r["corrupt"] > 0
        failed += "identical" not in r
        for m in r["modes"]:
            mode_counts[m] += 1
        print(json.dumps(r), flush=True)
        shutil.rmtree(scratch / f"run{i:03d}", ignore_errors=True)
    kills = ", ".join(f"{n} {m}" for m, n in mode_counts.items())
    print(f"{killed} killed, {identical} bit-identical, {corrupt} corrupt ({sum(mode_counts.values())} kills: {kills}; "
          f"{failed} failed to finish)")
    return 0 if identical == args.runs and corrupt == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
