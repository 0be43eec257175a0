"""Meta-training, resumable and exact: ``train(cfg, out_dir)``.

The run directory holds ``config.toml`` (resolved), ``metrics.jsonl`` and ``checkpoint.pt`` with the
complete state (meta-parameters, optimiser, RNG states, iteration). Training batch ``i`` is a pure
function of ``(train.seed, i)``, so a resumed run ends with exactly the numbers of an uninterrupted
one on CPU.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from innerloop import checkpoint as ckpt
from innerloop.build import DTYPES, build
from innerloop.config import Config, apply, to_toml
from innerloop.errors import DivergenceError, UserError
from innerloop.progress import Progress
from innerloop.runlock import RunLock
from innerloop.tasks.sinusoid import _seed

METRICS = "metrics.jsonl"


def _finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def diverged(window: float, best: float, factor: float) -> bool:
    """A logged meta-loss ``window`` has blown up: window - best > factor * |best| (factor 0: never).

    Measured from the best logged value's magnitude, so negative meta-losses (C&W margins) that drift
    from -4 to -2 are not called divergence, while 0.02 -> 300 (factor 1e4) is."""
    return factor > 0 and window - best > factor * max(abs(best), 1e-8)


def stalled(windows: list[float], n: int, tol: float = 1e-4) -> bool:
    """The last ``n`` logged meta-losses are equal to ``tol`` relative: max - min <= tol * |mean| (n 0: never).

    Each window averages fresh random tasks, so a healthy meta-loss moves by far more than 1e-4 between
    windows; one that does not has stopped depending on the tasks' data: the fine-tuned models output constants
    (2-way classification then scores exactly ln 2 per step, whatever the task)."""
    if n <= 0 or len(windows) < n:
        return False
    last = windows[-n:]
    return max(last) - min(last) <= tol * max(abs(sum(last) / n), 1e-8)


def _kept(ck_path: Path) -> str:
    """Which checkpoint survives a stopped run, for its error message."""
    return f"the checkpoint of iteration {ckpt.load(ck_path)['iteration']} is kept" if ck_path.exists() else \
        "no checkpoint was written yet"


def _read_config(run_dir: Path) -> Config:
    from innerloop.config import tomllib

    path = run_dir / "config.toml"
    if not path.is_file():
        raise UserError(f"{run_dir} holds no config.toml: is it a run directory made by 'innerloop train'?")
    return apply(Config(), tomllib.loads(path.read_text()), where=str(path))


def train(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
          on_eval: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Meta-train per ``cfg`` into ``out_dir``; returns a summary dict.

    With ``train.eval_every`` = N, the fixed evaluation tasks are scored every N iterations and the record
    ``{"iteration", "elapsed_s" (training time so far, evaluation excluded), "eval_s", "eval"}`` is appended
    to ``metrics.jsonl``; ``on_eval(record)`` returning True then stops training there (checkpoint kept), e.g.
    once an accuracy or a time budget is reached.

    The run directory has one writer: a second ``train`` on it fails at once with a one-line error naming the
    process that holds it (:class:`~innerloop.runlock.RunLock`). Checkpoints are written only when every tensor
    in them is finite.
    """
    out = Path(out_dir)
    if resume and not out.is_dir():
        raise UserError(f"nothing to resume: {out} does not exist (drop --resume to start a new run there)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run directory {out} ({e.strerror}): choose another --out") from None
    if not out.is_dir():
        raise UserError(f"--out {out} is not a directory: choose another --out")
    with RunLock(out):
        return _train(cfg, out, resume, progress, on_eval)


def _train(cfg: Config, out: Path, resume: bool, progress: bool,
           on_eval: Callable[[dict[str, Any]], bool] | None) -> dict[str, Any]:
    ck_path = out / ckpt.CHECKPOINT
    if ck_path.exists() and not resume:
        raise UserError(f"{out} already holds a run: pass --resume to continue it, or choose a new --out")
    if resume and (out / "config.toml").is_file():
        saved = _read_config(out)
        saved.train.iterations = cfg.train.iterations  # a resumed run may be extended (or shortened)
        saved.eval = cfg.eval  # evaluation settings never touch training: a finished run may be re-scored
        if to_toml(saved) != to_toml(cfg):
            raise UserError(
                f"the config differs from the one {out} was started with (only train.iterations and the eval "
                "section may change on --resume): resume without changes, or use a new --out"
            )
    ckpt.atomic_write(out / "config.toml", lambda f: f.write(to_toml(cfg).encode()))

    tasks, meta = build(cfg)
    dtype, device = DTYPES[cfg.train.dtype], torch.device(cfg.train.device)
    params = [p for p in meta.parameters() if p.requires_grad]
    if not params and cfg.train.iterations > 0:
        raise UserError("nothing to meta-learn: this init/rule combination has no trainable meta-parameters")
    # an untrained baseline (e.g. ALFA's "Random Init" row) has no parameters: a no-op optimiser keeps one code path
    opt = torch.optim.Adam(params or [torch.zeros(1, requires_grad=True)], lr=cfg.train.meta_lr)
    start, elapsed, best = 0, 0.0, math.inf  # best: lowest logged (windowed) meta-loss, for divergence checks
    metrics_path = out / METRICS
    if resume and ck_path.exists():
        state = ckpt.load(ck_path)
        meta.load_state_dict(state["meta"])
        opt.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        start, elapsed = int(state["iteration"]), float(state["elapsed"])
        best = float(state.get("best_window", math.inf))
        lines = metrics_path.read_text().splitlines()[: int(state["metrics_lines"])] if metrics_path.exists() else []
        metrics_path.write_text("".join(l + "\n" for l in lines))
    elif metrics_path.exists():
        metrics_path.unlink()

    def save(iteration: int) -> None:
        n_lines = len(metrics_path.read_text().splitlines()) if metrics_path.exists() else 0
        state = {
            "meta": meta.state_dict(), "optimizer": opt.state_dict(), "rng": ckpt.rng_state(),
            "iteration": iteration, "elapsed": elapsed, "metrics_lines": n_lines, "config": to_toml(cfg),
            "best_window": best, "saved_at": iteration,
            "executor": meta.mode,
        }
        try:
            ckpt.save(ck_path, state)
        except ValueError as e:  # non-finite state: never on disk
            raise DivergenceError(f"{e} at iteration {iteration}; {_kept(ck_path)} — lower train.meta_lr or rule.lr "
                                  "and --resume") from None

    total = cfg.train.iterations
    bar = Progress(total, start, enabled=progress)
    log = open(metrics_path, "a")
    window_loss, window_n, bad = 0.0, 0, 0
    windows: list[float] = []  # logged meta-losses of this session, for the stall check
    t_window = time.perf_counter()
    it = start
    try:
        while it < total:
            t0 = time.perf_counter()
            batch = tasks.train_batch(cfg.train.meta_batch, cfg.train.seed, it, dtype=dtype, device=device)
            torch.manual_seed(_seed(cfg.train.seed, it, 0x5EED))  # per-task inits, ZO directions
            carry, ok, losses_all = None, True, []
            for a, b in meta.spans():
                opt.zero_grad(set_to_none=True)
                losses, aux, carry = meta.meta_backward_span(batch, it // cfg.train.epoch_length, a, b, carry)
                grads = [p.grad for p in params if p.grad is not None]
                loss = float(losses.mean())
                losses_all.append(loss)
                if not (math.isfinite(loss) and _finite(*grads) and _finite(*aux.values())):
                    ok = False
                    break
                if cfg.train.clip_grad > 0:
                    for g in grads:
                        g.clamp_(-cfg.train.clip_grad, cfg.train.clip_grad)
                opt.step()
                if not _finite(*params):
                    raise DivergenceError(
                        f"the meta-parameters became non-finite in the update of iteration {it + 1} (finite meta-loss "
                        f"and gradients: the step itself overflowed); {_kept(ck_path)} — lower train.meta_lr (or set "
                        "train.clip_grad) and --resume"
                    )
            loss = sum(losses_all) / len(losses_all)
            if not ok:
                bad += 1
                log.write(json.dumps({"iteration": it + 1, "event": "non-finite", "meta_loss": loss}) + "\n")
                log.flush()
                if bad >= cfg.train.max_bad_steps:
                    raise DivergenceError(
                        f"meta-training diverged: {bad} consecutive non-finite meta-losses, gradients or generated "
                        f"hyperparameters up to iteration {it + 1}; {_kept(ck_path)} — lower "
                        "train.meta_lr or rule.lr (or set train.clip_grad) and --resume"
                    )
                it += 1
                continue
            bad = 0
            it += 1
            elapsed += time.perf_counter() - t0
            window_loss += loss
            window_n += 1
            bar.update(it, loss)
            if it % cfg.train.log_every == 0 or it == total:
                dt = time.perf_counter() - t_window
                rec = {
                    "iteration": it, "meta_loss": window_loss / window_n,
                    "tasks_per_s": window_n * cfg.train.meta_batch / max(dt, 1e-9), "elapsed_s": round(elapsed, 3),
                }
                for k, v in aux.items():
                    rec[f"{k}_mean"] = float(v.float().mean())
                log.write(json.dumps(rec) + "\n")
                log.flush()
                window = window_loss / window_n
                window_loss, window_n, t_window = 0.0, 0, time.perf_counter()
                factor = cfg.train.divergence_factor
                if diverged(window, best, factor):
                    # raised before this iteration's checkpoint: the saved one predates the blow-up
                    kept = _kept(ck_path)
                    raise DivergenceError(
                        f"meta-training diverged: the meta-loss rose from {best:.4g} to {window:.4g} by iteration {it}; "
                        f"{kept} — lower train.meta_lr or rule.lr, or set train.clip_grad (or raise "
                        "train.divergence_factor), and --resume"
                    )
                best = min(best, window)
                windows.append(window)
                if stalled(windows, cfg.train.stall_windows):
                    kept = _kept(ck_path)
                    raise DivergenceError(
                        f"meta-training stalled: the meta-loss stayed at {window:.6g} for {cfg.train.stall_windows} "
                        f"logged windows up to iteration {it}, whatever the tasks (the fine-tuned models output "
                        f"constants); {kept} — lower rule.scale or rule.lr (an LSTM rule: rule.bias = false) and "
                        "start a new --out, or set train.stall_windows = 0 to go on"
                    )
            stop = False
            if cfg.train.eval_every and it % cfg.train.eval_every == 0:
                from innerloop.evaluate import evaluate_meta

                t_eval = time.perf_counter()
                result = evaluate_meta(cfg, meta, tasks)
                record = {"iteration": it, "elapsed_s": round(elapsed, 3),
                          "eval_s": round(time.perf_counter() - t_eval, 3), "eval": result}
                log.write(json.dumps(record) + "\n")
                log.flush()
                stop = bool(on_eval and on_eval(record))
                t_window += record["eval_s"]  # the window's tasks/s counts training only
            if it % cfg.train.checkpoint_every == 0 or it == total or stop:
                log.flush()
                save(it)
            if stop:
                break
    except KeyboardInterrupt:
        log.close()
        bar.close()
        raise UserError(f"interrupted at iteration {it}; the last checkpoint is kept: continue with --resume") from None
    finally:
        if not log.closed:
            log.close()
    bar.close()
    if not ck_path.exists():  # nothing trained (train.iterations = 0): keep the untrained baseline evaluable
        save(it)
    return {"iterations": it, "elapsed_s": elapsed, "executor": meta.mode}


def load_run(run_dir: str | Path):
    """(config, meta-learner with trained weights, tasks) from a run directory."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"no run directory at {run}: train first with 'innerloop train CONFIG --out {run}'")
    cfg = _read_config(run)
    state = ckpt.load(run / ckpt.CHECKPOINT)
    tasks, meta = build(cfg)
    bad = ckpt.non_finite(state.get("meta", {}) if isinstance(state, dict) else {})
    if bad:
        raise UserError(f"checkpoint in {run} holds non-finite meta-parameters ({', '.join(bad[:3])}): it cannot be "
                        "evaluated; retrain, or --resume from an earlier copy")
    try:
        meta.load_state_dict(state["meta"])
    except (RuntimeError, KeyError) as e:
        raise UserError(f"checkpoint in {run} does not match its config.toml ({str(e).splitlines()[0][:100]}); retrain") from None
    return cfg, meta, tasks, state
