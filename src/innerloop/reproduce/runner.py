"""Runs the rows of a reproduction: resumable, optionally in parallel processes.

A row is one training run in ``OUT/runs/<row-id>/``. A finished row has ``result.json`` and is
never retrained; an unfinished one resumes from its checkpoint.

Under ``torchrun`` (or ``innerloop reproduce --nproc N``) every process runs every row, one after the other: each
row's meta-batches and test tasks are shared out among the processes (``innerloop.distributed``), and rank 0
alone writes ``result.json``, the tables and the figures (:func:`writes_report`).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from innerloop import config as config_mod
from innerloop import distributed
from innerloop.errors import DivergenceError, UserError
from innerloop.threads import busy_machine_warning, env_threads


@dataclass
class Row:
    id: str
    method: str
    setting: dict[str, Any]
    config: str
    overrides: list[str]
    paper: float | None
    extra: dict[str, Any] = field(default_factory=dict)
    record: list[int] | None = None  # evaluate after each of these step counts (one unroll)
    evals: dict[str, dict[str, Any]] | None = None  # extra evaluations: name -> evaluate_run kwargs (e.g. sources)
    #: the name in ``evals`` whose result is also the row's top-level metric; None: a separate evaluation on the
    #: config's eval tasks (a table that reads only ``evals`` sets this and skips that evaluation's cost)
    main: str | None = None


def writes_report() -> bool:
    """Whether this process writes results and tables: the only process, or rank 0 of a job."""
    return distributed.current().main


def _write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result.json`` atomically: an interrupted write never leaves a half file that reads as finished."""
    if not writes_report():
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


def _say(text: str, stream=None) -> None:
    """A progress line (stdout; stderr stays for ``[row done]`` and errors), from one process of a job."""
    if writes_report():
        print(text, file=stream or sys.stdout, flush=True)


def _run_row(row: Row, out: str, threads: int, place: str = "") -> dict[str, Any]:
    from innerloop.evaluate import evaluate_run
    from innerloop.train import train

    torch.set_num_threads(threads)
    run_dir = Path(out) / "runs" / row.id
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    if (run_dir / DIVERGED).is_file():  # delete it (after changing the row's settings) to try again
        return None
    cfg = config_mod.load(row.config, row.overrides)
    resume = (run_dir / "checkpoint.pt").is_file()
    t0 = time.perf_counter()
    _say(f"[row {place}] {row.id}: {'resuming' if resume else 'training'} ({cfg.train.iterations} iterations)")
    try:
        summary = train(cfg, run_dir, resume=resume, progress=False)
    except DivergenceError as e:  # one row's blow-up is reported, not fatal to the table
        if writes_report():  # every process of a job stops alike (the checks act on the all-reduced values)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / DIVERGED).write_text(json.dumps({"id": row.id, "method": row.method, "setting": row.setting,
                                                        "error": str(e)}, indent=1))
            print(f"[row diverged] {row.id}: {e}", file=sys.stderr, flush=True)
        distributed.barrier(distributed.current())
        return None
    _say(f"[row {place}] {row.id}: trained in {time.perf_counter() - t0:.0f} s; evaluating on {cfg.eval.tasks} test "
         "tasks")
    evals = {name: evaluate_run(run_dir, **kw) for name, kw in (row.evals or {}).items()}
    res = evals[row.main] if row.main is not None else evaluate_run(run_dir, record=row.record)
    result = {
        "method": row.method, "setting": row.setting, "metric": res["metric"], "mean": res["mean"],
        "ci95": res["ci95"], "tasks": res["tasks"], "paper": row.paper,
        "iterations": summary["iterations"], "train_wall_s": round(summary["elapsed_s"], 1),
        "wall_s_this_session": round(time.perf_counter() - t0, 1), "executor": summary["executor"],
        "device": cfg.train.device, **row.extra,
    }
    if "by_steps" in res:
        result["by_steps"] = res["by_steps"]
    elif "values" in res:
        result["values"] = res["values"]  # per-task scores, in test-task order: paired comparisons of rows
    if "extra" in res:
        result["extra"] = res["extra"]
    if evals:
        result["evals"] = evals
    _write_result(result_path, result)
    _say(f"[row done] {row.id}: {res['metric']} {res['mean']:.4f} +- {res['ci95']:.4f}", sys.stderr)
    distributed.barrier(distributed.current())  # result.json is on disk before any process looks at the next row
    return result


def rescore_row(row: Row, out: str, threads: int = 1, tolerance: float = 0.0) -> dict[str, Any]:
    """Re-run a finished row's evaluations to add the per-task scores (``values``) that rows scored before
    they were stored lack, leaving training untouched. The test tasks are fixed, so every recomputed mean
    must equal the stored one: a mismatch (another checkpoint, data or code) raises instead of mixing runs.

    ``tolerance`` (in the metric's units, e.g. ASR points) admits a recomputed mean that differs by at most
    that much, for rows whose long sign-sensitive unrolls (an LSTM fine-tuner, 200 steps) amplify float-level
    changes in the code or build since the row was scored (not the thread count: 1 and 2 threads gave
    identical scores on 8 test tasks of a drifted row): the new evaluation replaces the old, whose mean is kept
    as ``rescored_from`` so the table can say so."""
    from innerloop.evaluate import evaluate_run, has_values

    torch.set_num_threads(threads)
    run_dir = Path(out) / "runs" / row.id
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise UserError(f"{run_dir} has no result.json: finish the row first (innerloop reproduce ... --only {row.id})")
    result = json.loads(result_path.read_text())
    evals = dict(result.get("evals", {}))
    for name, kw in (row.evals or {}).items():
        if name in evals and has_values(evals[name]):
            continue
        new = evaluate_run(run_dir, **kw)
        old = evals.get(name)
        if old is not None:
            drift = abs(old["mean"] - new["mean"])
            if drift > max(tolerance, 1e-6 * max(1.0, abs(old["mean"]))):
                raise UserError(f"{row.id}/{name}: the re-evaluation gives {new['mean']:.4f}, the stored result "
                                f"{old['mean']:.4f}: the run changed since it was scored; delete result.json to "
                                "rescore it (or pass --tolerance if the gap is float-level drift)")
            if drift > 1e-6 * max(1.0, abs(old["mean"])):
                new["rescored_from"] = old.get("rescored_from", old["mean"])
        evals[name] = new
    result["evals"] = evals
    if row.main is not None:
        main = evals[row.main]
        result.update({k: main[k] for k in ("mean", "ci95", "tasks", "by_steps", "extra") if k in main})
    _write_result(result_path, result)
    return result


def rescored_lines(results: list[dict[str, Any] | None]) -> list[str]:
    """Markdown lines naming every evaluation whose mean moved when ``rescore_row`` re-ran it (``rescored_from``):
    the table shows the re-evaluation, whose per-task scores the paired differences use."""
    moved = [(r, name, e) for r in results if r for name, e in r.get("evals", {}).items() if "rescored_from" in e]
    if not moved:
        return []
    parts = [f"{r['method']} ({', '.join(map(str, r['setting'].values()))}) on {name}: {e['rescored_from']:.2f} -> "
             f"{e['mean']:.2f}" for r, name, e in moved]
    return ["", "Re-evaluated to add per-task scores (same checkpoint and test tasks; float-level changes in the "
            "code since the row was scored, amplified by the long sign-sensitive unroll): " + "; ".join(parts) + "."]


def hardware(device: str) -> dict[str, Any]:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


DIVERGED = "diverged.json"


def run_rows(rows: list[Row], out: str, jobs: int = 1) -> list[dict[str, Any] | None]:
    """Run (or resume, or skip when finished) every row; ``jobs`` rows at a time in processes.

    Each process uses ``cores / jobs`` threads (``cores / (jobs x processes on this machine)`` in a torchrun job;
    ``INNERLOOP_THREADS`` overrides: oversubscribed threads slow these small workloads several-fold when other
    jobs share the machine). In a torchrun job the rows run one at a time, each in every process."""
    if jobs < 1:
        raise UserError("--jobs must be >= 1")
    if jobs > 1 and distributed.current().size > 1:
        raise UserError("--jobs trains rows side by side in one process each, --nproc / torchrun splits each row's "
                        "tasks over processes: use one of them")
    Path(out, "runs").mkdir(parents=True, exist_ok=True)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = env_threads() or max(1, (os.cpu_count() or 1) // (jobs * local))
    warning = busy_machine_warning(threads * jobs * local)
    if warning and distributed.current().rank == 0:
        print(warning, flush=True)
    if jobs == 1:
        return [_run_row(r, out, threads, f"{i + 1}/{len(rows)}") for i, r in enumerate(rows)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(jobs) as pool:
        return pool.starmap(_run_row, [(r, out, threads, f"{i + 1}/{len(rows)}") for i, r in enumerate(rows)],
                            chunksize=1)  # rows differ in length


def truncated_horizon(horizon: int, segment: int = 20) -> list[str]:
    """Overrides that fine-tune each meta-training task for ``horizon`` steps and backpropagate them in
    ``segment``-step pieces, one meta-update each (L2L's truncated unroll): a fine-tuner meta-trained only
    on a ``segment``-step unroll learns nothing about the steps after it, and tested for longer it diverges.
    ``segment = 0``: backpropagate the whole horizon at once (one meta-update per meta-batch)."""
    return [f"inner.steps={horizon}", f"train.truncation={min(segment, horizon)}"]


def select_rows(rows: list[Row], only: str | None, example: str) -> list[Row]:
    """Rows chosen by the comma-separated ``only`` keys (all rows if None): a key equal to a row id picks
    that row alone (``cifar-l2o`` is not also ``mnist-cifar-l2o``); any other key picks every id containing it."""
    if not only:
        return rows
    keys = [s.strip() for s in only.split(",") if s.strip()]
    ids = {r.id for r in rows}
    chosen = [r for r in rows if any(k == r.id if k in ids else k in r.id for k in keys)]
    if not chosen:
        raise UserError(f"--only {only!r} matches no row; row ids look like {example}")
    return chosen


def default_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def diverged_rows(out: str | Path) -> dict[str, dict[str, Any]]:
    """Rows whose training diverged (``OUT/runs/<id>/diverged.json``): shown as such in the tables."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(out, "runs").glob(f"*/{DIVERGED}"))}


def finished_results(out: str | Path) -> dict[str, dict[str, Any]]:
    """Every finished row in ``OUT/runs`` (also those finished by earlier or --only invocations)."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(out, "runs").glob("*/result.json"))}


def run_info(device: str, results: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    return {"hardware": hardware(device), "train_wall_s": sum(r.get("train_wall_s", 0) for r in results),
            "session_wall_s": round(time.perf_counter() - t0, 1)}


def train_table(rows: list[Row], out: str, jobs: int, only: str | None, example: str,
                device: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train (or resume, or skip) the rows chosen by ``only``; return every finished row's result in
    ``OUT/runs`` (also those of earlier invocations), sorted by row id, and the run info."""
    t0 = time.perf_counter()
    run_rows(select_rows(rows, only, example), out, jobs)
    done = finished_results(out)
    results = [done[k] for k in sorted(done)]
    return results, run_info(device, results, t0)
