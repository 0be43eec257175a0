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
from innerloop.build import DTYPES, build, spec_of
from innerloop.config import Config, apply, to_toml
from innerloop.errors import DivergenceError, UserError
from innerloop.progress import Progress
from innerloop import distributed
from innerloop.oracles import draws_in_order
from innerloop.runlock import LOCK, RunLock
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


def unroll_length(cfg: Config, iteration: int) -> int:
    """Inner steps unrolled in meta-iteration ``iteration``: ``inner.steps``, or with ``train.horizon = H`` a number
    drawn uniformly from ``inner.steps .. H`` by the iteration's own seed (so a resumed run draws the same)."""
    lo, hi = cfg.inner.steps, cfg.train.horizon
    if not hi or hi <= lo:
        return lo
    return lo + _seed(cfg.train.seed, iteration, 0x4071) % (hi - lo + 1)


def _kept(ck_path: Path) -> str:
    """Which checkpoint survives a stopped run, for its error message."""
    return f"the checkpoint of iteration {ckpt.load(ck_path)['iteration']} is kept" if ck_path.exists() else \
        "no checkpoint was written yet"


#: what ``--resume`` may change: the training length, evaluation, and what a stopped run needs to go on (the
#: meta-learning rate, clipping and the divergence guards, bookkeeping intervals, the checkpointed unroll, which
#: computes the same meta-gradient in less memory); the rest shaped the run so far and is fixed
RESUMABLE = ("train.iterations", "eval.", "train.meta_lr", "train.clip_grad", "train.divergence_factor",
             "train.max_bad_steps", "train.stall_windows", "train.checkpoint_every", "train.log_every",
             "train.checkpoint_unroll")
RESUMABLE_TEXT = ("train.iterations, eval.*, train.meta_lr, train.clip_grad, the divergence guards, "
                  "train.checkpoint_every / log_every and train.checkpoint_unroll")


def _resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def _refuse_fixed(changes: list[tuple[str, Any, Any]], out: Path, fix: str) -> None:
    """One line naming every setting (both values) that may not change on --resume, if any among ``changes``."""
    wrong = [d for d in changes if not _resumable(d[0])]
    if wrong:
        listed = "; ".join(f"{k}: {a!r} (saved) vs {b!r} (given)" for k, a, b in wrong[:6])
        raise UserError(f"the config differs from the one {out} was started with: {listed} — {fix}")


def differences(a: Config, b: Config) -> list[tuple[str, Any, Any]]:
    """``(section.key, a's value, b's value)`` for every setting in which two configs differ."""
    from dataclasses import asdict

    da, db = asdict(a), asdict(b)
    return [(f"{sec}.{key}", da[sec][key], db[sec][key]) for sec in da for key in da[sec]
            if da[sec][key] != db[sec][key]]


def resume_config(out: str | Path, config: str | None = None, sets: list[str] | None = None) -> Config:
    """The config ``innerloop train --resume`` continues with: the run's saved ``config.toml`` (the truth), with
    ``--set`` changes to ``train.iterations`` and ``eval.*`` only, each printed. ``config`` (a name or file) may be
    repeated: it must then resolve, with ``sets``, to the saved config apart from those keys (else one line naming
    every differing key with both values)."""
    import copy

    from innerloop.config import load, parse_override, validate

    out = Path(out)
    if not out.is_dir():
        raise UserError(f"nothing to resume: {out} does not exist (start it without --resume)")
    if not (out / ckpt.CHECKPOINT).is_file():
        raise UserError(f"nothing to resume: {out} holds no checkpoint yet (start it without --resume, or use "
                        "--resume-or-start)")
    saved = _read_config(out)
    nested: dict[str, dict[str, Any]] = {}
    for text in sets or []:
        section, key, value = parse_override(text)
        nested.setdefault(section, {})[key] = value
    if config is not None:
        _refuse_fixed(differences(saved, load(config, sets)), out,
                      "resume without CONFIG (the saved config is used), or use a new --out")
    cfg = copy.deepcopy(saved)
    if nested:
        apply(cfg, nested, where="--set")
        validate(cfg)
        fixed = [k for k, _, _ in differences(saved, cfg) if not _resumable(k)]
        if fixed:
            raise UserError(f"--set {', '.join(fixed)} cannot change on --resume (only {RESUMABLE_TEXT}: the rest "
                            "shaped the run so far); start a new --out to change it")
    return cfg  # train() prints each change once the run has started


def _in_order(opt_state: dict[str, Any], saved: list[str] | None, names: list[str], meta) -> dict[str, Any]:
    """The optimizer state of a checkpoint rearranged from the parameter order it was saved in (``saved``; None:
    a checkpoint from before the order was stored, whose ``nn.ParameterDict`` s were sorted by key) to ``names``."""
    from innerloop.params import legacy_parameter_order

    if saved is None:
        wanted = set(names)
        saved = [n for n in legacy_parameter_order(meta) if n in wanted]
    if saved == names or sorted(saved) != sorted(names) or len(opt_state.get("param_groups", [])) != 1:
        return opt_state  # same order, or not ours to fix (load_state_dict reports a mismatch)
    position = {n: i for i, n in enumerate(saved)}
    state = opt_state["state"]
    moved = {i: state[position[n]] for i, n in enumerate(names) if position[n] in state}
    return {"state": moved, "param_groups": opt_state["param_groups"]}


class _CtrlC:
    """The first Ctrl-C (SIGINT) or SIGTERM (``kill``, a job scheduler, a background run whose SIGINT is ignored)
    asks training to stop after the current iteration with a checkpoint; a second one stops at once
    (KeyboardInterrupt: the last checkpoint written is kept). Installed only for a single-process run in the main
    thread, per signal only where its handler is the default one; elsewhere the signal acts at once, as before."""

    def __init__(self, sigint: bool, sigterm: bool = False):
        import signal

        self._set, self._previous = False, {}
        for sig, on in ((signal.SIGINT, sigint), (signal.SIGTERM, sigterm)):
            if on:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        import signal
        import sys

        if self._set:
            raise KeyboardInterrupt
        self._set = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        sys.stderr.write(f"\ninnerloop: {name}: finishing this iteration, then saving a checkpoint ({name} again to "
                         "stop at once, keeping the last checkpoint)\n")

    def is_set(self) -> bool:
        return self._set

    def restore(self) -> None:
        import signal

        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


def _catch_ctrl_c(world: distributed.World) -> _CtrlC:
    import signal
    import threading

    main = world.size == 1 and threading.current_thread() is threading.main_thread()
    return _CtrlC(main and signal.getsignal(signal.SIGINT) is signal.default_int_handler,
                  main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)


def _then(ck_path: Path) -> str:
    """How to go on after a stop: ``--resume`` from the kept checkpoint, or a fresh start when none was written."""
    return "and --resume" if ck_path.exists() else "and start again (nothing was saved to resume)"


def _kept_quietly(ck_path: Path) -> str:
    """:func:`_kept`, or a plain statement when the checkpoint cannot be read right now."""
    try:
        return _kept(ck_path)
    except Exception:  # noqa: BLE001 - an error message must not fail
        return "the last checkpoint written is kept"


def _read_config(run_dir: Path) -> Config:
    from innerloop.config import read_toml

    path = run_dir / "config.toml"
    if not path.is_file():
        raise UserError(f"{run_dir} holds no config.toml: is it a run directory made by 'innerloop train'?")
    data = read_toml(path)
    oracle = data.get("oracle")
    if isinstance(oracle, dict) and "noise" not in oracle:
        # saved before oracle.noise existed: its zeroth-order directions came from the global stream
        oracle["noise"] = "stream"
    rule = data.get("rule")
    if isinstance(rule, dict):
        if rule.get("kind", "sgd") != "alfa":
            rule.pop("form", None)  # only ALFA reads it: a saved "paper" (the old default) must not block a resume
        elif "form" not in rule:
            # saved before rule.form existed (or while "paper" was its default): ALFA ran in the authors' form
            rule["form"] = "paper"
    return apply(Config(), data, where=str(path))


def _load_state(ck_path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """A checkpoint that is a dict holding ``keys``; anything else is a one-line :class:`UserError`."""
    state = ckpt.load(ck_path)
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{ck_path} is not an innerloop training checkpoint (no {', '.join(missing[:3])}): "
                        "delete it and retrain, or restore a copy")
    return state


#: what an allocation failure looks like on CPU (RuntimeError from the allocator) and on CUDA
_OOM = ("out of memory", "can't allocate memory", "not enough memory", "bad_alloc")


def _allocation_failure(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(m in str(e) for m in _OOM))


def train(cfg: Config, out_dir: str | Path, resume: bool | str = False, progress: bool = True,
          on_eval: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Meta-train per ``cfg`` into ``out_dir``; returns a summary dict.

    ``resume=True`` continues the run in ``out_dir`` from its checkpoint (an error if there is none; ``cfg`` must
    equal its saved config apart from ``train.iterations`` and ``eval.*``: see :func:`resume_config`);
    ``resume="auto"`` continues it if it has a checkpoint and starts it otherwise.

    With ``train.eval_every`` = N, the fixed evaluation tasks are scored every N iterations and the record
    ``{"iteration", "elapsed_s" (training time so far, evaluation excluded), "eval_s", "eval"}`` is appended
    to ``metrics.jsonl``; ``on_eval(record)`` returning True then stops training there (checkpoint kept), e.g.
    once an accuracy or a time budget is reached.

    Guarantees (tested in ``tests/test_faults.py``):

    - one writer: a second ``train`` on the directory fails at once naming the process that holds it
      (:class:`~innerloop.runlock.RunLock`);
    - a start that fails (bad config, data, device, checkpoint) leaves the directory as it found it;
    - checkpoints are atomic, hold only finite numbers, and are written only once the next iteration's
      meta-loss, computed on exactly those parameters, is finite and not diverged (see :func:`_Checkpoints`);
    - a run killed at any point and resumed ends with the same meta-parameters, optimiser state and
      ``metrics.jsonl`` (timings aside) as an uninterrupted one: the partially filled logging window and the
      divergence/stall references are part of the checkpoint.
    """
    out = Path(out_dir)
    if resume == "auto":
        resume = (out / ckpt.CHECKPOINT).is_file()
    world = distributed.current()
    started: list[bool] = [False, False]  # [the directory is being written, every rank agreed to start]
    if world.size > 1:
        try:
            if not world.main:  # rank 0 alone owns the directory: lock, config, metrics, checkpoints
                if resume and not out.is_dir():
                    raise UserError(f"nothing to resume: {out} does not exist (drop --resume to start a new run there)")
                return _train(cfg, out, resume, False, on_eval, started, world)
            return _train_in(cfg, out, resume, progress, on_eval, started, world)
        except BaseException as e:
            if started[1] and distributed.collective_failure(e):
                raise distributed.lost(e, world, f"{_kept_quietly(out / ckpt.CHECKPOINT)} — resume it (innerloop "
                                                 "train --resume; innerloop reproduce resumes by itself), with any "
                                                 "number of processes") from None
            if started[1]:
                raise
            # the other ranks wait to hear whether everyone started; a cause they share is reported by one rank
            errors = distributed.agree(world, str(e) or type(e).__name__)
            raise distributed.report_once(world, errors, e) from None
    return _train_in(cfg, out, resume, progress, on_eval, started, world)


def _train_in(cfg: Config, out: Path, resume: bool, progress: bool, on_eval, started: list[bool],
              world: distributed.World) -> dict[str, Any]:
    """``train`` for the process that owns the run directory (the only one, or rank 0)."""
    if resume and not out.is_dir():
        raise UserError(f"nothing to resume: {out} does not exist (drop --resume to start a new run there)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is not a directory: choose another --out")
    created = next(p for p in [out, *out.parents] if p.parent.exists() or p.parent == p)
    created = None if created.exists() else created  # the topmost folder this call creates, if any
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run directory {out} ({e.strerror or e}): choose another --out") from None
    try:
        had_lock = (out / LOCK).exists()
        with RunLock(out):
            before = {p.name for p in out.iterdir()} - ({LOCK} if not had_lock else set())
            if before - {LOCK}:
                created = None  # another process made the folder first: never remove it
            try:
                return _train(cfg, out, resume, progress, on_eval, started, world)
            finally:
                if not started[0]:  # a failed start leaves the directory as it found it
                    _undo_start(out, created, before)
    except OSError as e:
        raise UserError(f"{e.strerror or e}: {e.filename or out} — free space or fix permissions"
                        + (", then --resume" if started[0] else "")) from None


def _undo_start(out: Path, created: Path | None, before: set[str]) -> None:
    import shutil

    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name not in before:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


class _Checkpoints:
    """Writes checkpoints one iteration late, so every checkpoint on disk is known to be healthy.

    The state after iteration ``k`` is snapshotted in memory; it is written when iteration ``k + 1``'s meta-loss
    -- computed from exactly those meta-parameters -- is finite and not diverged from the reference
    (:func:`diverged`), and dropped otherwise (the previous checkpoint stays). The last iteration of a run
    (or a stop requested by ``on_eval``) is written at once.
    """

    def __init__(self, path: Path, writer: bool = True):
        self.path, self.writer, self.pending = path, writer, None

    def hold(self, state: dict[str, Any]) -> None:
        import copy

        self.pending = copy.deepcopy(state) if self.writer else None

    def resolve(self, healthy: bool) -> None:
        if self.pending is not None and healthy:
            self.write(self.pending)
        self.pending = None

    def write(self, state: dict[str, Any]) -> None:
        """Save (the writer), or make the writer's finiteness decision (the other ranks of a job: same state)."""
        try:
            if self.writer:
                ckpt.save(self.path, state)
            elif ckpt.non_finite(state):
                raise ValueError("not writing a checkpoint with non-finite values")
        except ValueError as e:  # non-finite state: never on disk
            raise DivergenceError(f"{e} at iteration {state['iteration']}; {_kept(self.path)} — lower "
                                  f"train.meta_lr (rule.lr: in a new --out) {_then(self.path)}") from None


def _train(cfg: Config, out: Path, resume: bool, progress: bool,
           on_eval: Callable[[dict[str, Any]], bool] | None, started: list[bool],
           world: distributed.World) -> dict[str, Any]:
    ck_path = out / ckpt.CHECKPOINT
    if ck_path.exists() and not resume:
        raise UserError(f"{out} already holds a run: pass --resume to continue it, or choose a new --out")
    if resume and not ck_path.exists():
        raise UserError(f"nothing to resume: {out} holds no checkpoint yet (start it without --resume, or use "
                        "--resume-or-start)")
    changes: list[tuple[str, Any, Any]] = []
    if resume and (out / "config.toml").is_file():
        saved = _read_config(out)
        changes = differences(saved, cfg)
        _refuse_fixed(changes, out, f"only {RESUMABLE_TEXT} may change on --resume: resume without changes, or "
                                    "use a new --out")

    tasks, meta = build(cfg)
    spec = spec_of(tasks)
    dtype, device = DTYPES[cfg.train.dtype], torch.device(cfg.train.device)
    params = [p for p in meta.parameters() if p.requires_grad]
    names = [n for n, p in meta.named_parameters() if p.requires_grad]  # the optimizer state's order
    if not params and cfg.train.iterations > 0:
        raise UserError("nothing to meta-learn: this init/rule combination has no trainable meta-parameters")
    # an untrained baseline (e.g. ALFA's "Random Init" row) has no parameters: a no-op optimiser keeps one code path
    opt = torch.optim.Adam(params or [torch.zeros(1, requires_grad=True)], lr=cfg.train.meta_lr)
    # run-long bookkeeping, all of it checkpointed: iteration, training time, the divergence reference (lowest of
    # the untrained meta-loss and the logged windows), the partially filled window, the logged windows (stall check)
    start, elapsed, best = 0, 0.0, math.inf
    window_loss, window_n, windows = 0.0, 0, []
    metrics_path = out / METRICS
    n_lines, state = 0, None
    if resume and ck_path.exists():
        state = _load_state(ck_path, ("meta", "optimizer", "rng", "iteration"))
        try:
            meta.load_state_dict(state["meta"])
            opt.load_state_dict(_in_order(state["optimizer"], state.get("param_names"), names, meta))
            for group in opt.param_groups:  # the config's rate (a resume may lower it), not the saved one
                group["lr"] = cfg.train.meta_lr
            ckpt.set_rng_state(state["rng"])
            start, elapsed = int(state["iteration"]), float(state.get("elapsed", 0.0))
            best = float(state.get("best_window", math.inf))
            window_loss, window_n = float(state.get("window_loss", 0.0)), int(state.get("window_n", 0))
            windows = [float(w) for w in state.get("windows", [])]
            n_lines = int(state.get("metrics_lines", 0))
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, SyntaxError) as e:
            raise UserError(f"{ck_path} does not match the config ({str(e).splitlines()[0][:100]}): resume with the "
                            "config it was trained with, or use a new --out") from None
    shard = world.shard(cfg.train.meta_batch) if world.size > 1 else None
    if shard is not None and draws_in_order(meta.oracle):
        raise UserError("oracle.noise = 'stream' draws each task's directions after the previous task's, so the tasks "
                        "cannot be split over processes: set oracle.noise = 'keyed' (or train in one process)")
    # everything that can refuse the start has run: every rank agrees, then the directory is written
    errors = distributed.agree(world, None)
    started[1] = True
    if any(errors):
        raise distributed.PeerFailed("another process of this job failed to start (its error names the cause); nothing "
                                     "was written")
    writer = world.main
    started[0] = True
    if writer and changes:
        import sys

        for key, a, b in changes:
            sys.stderr.write(f"innerloop: resuming {out} from iteration {start} with {key} = {b!r} (was {a!r})\n")
    if writer:
        for stale in out.glob("*.*.*.tmp"):  # left by a writer killed mid-write: under the lock, no one else writes
            stale.unlink(missing_ok=True)
        ckpt.atomic_write(out / "config.toml", lambda f: f.write(to_toml(cfg).encode()))
        if state is not None:
            lines = metrics_path.read_text().splitlines()[:n_lines] if metrics_path.exists() else []
            ckpt.atomic_write(metrics_path, lambda f: f.write("".join(l + "\n" for l in lines).encode()))
        elif metrics_path.exists():
            metrics_path.unlink()
    checkpoints = _Checkpoints(ck_path, writer)

    def snapshot(iteration: int) -> dict[str, Any]:
        return {
            "meta": meta.state_dict(), "optimizer": opt.state_dict(), "rng": ckpt.rng_state(),
            "iteration": iteration, "elapsed": elapsed, "metrics_lines": n_lines, "config": to_toml(cfg),
            "best_window": best, "window_loss": window_loss, "window_n": window_n,
            "windows": windows[-max(cfg.train.stall_windows, 1):], "saved_at": iteration, "executor": meta.mode,
            "spec": spec,  # what the model is built for: innerloop.load needs no data
            "param_names": names,  # the optimizer state's order
        }

    total = cfg.train.iterations
    bar = Progress(total, start, enabled=progress and writer)
    log = open(metrics_path, "a") if writer else None

    def write(record: dict[str, Any]) -> None:
        nonlocal n_lines
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()
        n_lines += 1

    bad = 0
    t_window = time.perf_counter()
    it = start
    interrupted = _catch_ctrl_c(world)
    try:
        while it < total:
            t0 = time.perf_counter()
            if cfg.train.lr_decay_every:  # staircase: a function of the iteration, so a resumed run matches
                for group in opt.param_groups:
                    group["lr"] = cfg.train.meta_lr * cfg.train.lr_decay_rate ** (it // cfg.train.lr_decay_every)
            try:
                batch = tasks.train_batch(cfg.train.meta_batch, cfg.train.seed, it, dtype=dtype, device=device)
                torch.manual_seed(_seed(cfg.train.seed, it, 0x5EED))  # per-task inits, ZO directions
                carry, ok, losses_all = None, True, []
                horizon = unroll_length(cfg, it)
                for a, b in meta.spans(horizon):
                    opt.zero_grad(set_to_none=True)
                    losses, aux, carry = meta.meta_backward_span(batch, it // cfg.train.epoch_length, a, b, carry,
                                                                 shard, horizon)
                    everywhere = True
                    if shard is not None:  # one all-reduce: mean meta-gradient, all losses, finite on every rank
                        mine = _finite(losses, *[p.grad for p in params if p.grad is not None], *aux.values())
                        losses, everywhere = distributed.reduce_step(world, params, losses, cfg.train.meta_batch,
                                                                     shard, mine)
                    grads = [p.grad for p in params if p.grad is not None]
                    loss = float(losses.mean())
                    losses_all.append(loss)
                    ok = everywhere and math.isfinite(loss) and _finite(*grads) and (
                        shard is not None or _finite(*aux.values()))
                    if not losses_all[1:]:  # the first span's loss is the held checkpoint's own meta-loss
                        best = min(best, loss) if ok and it == 0 else best  # the untrained model: the first reference
                        checkpoints.resolve(ok and not diverged(loss, best, cfg.train.divergence_factor))
                    if not ok:
                        break
                    if cfg.train.clip_grad > 0:
                        for g in grads:
                            g.clamp_(-cfg.train.clip_grad, cfg.train.clip_grad)
                    opt.step()
                    if not _finite(*params):
                        raise DivergenceError(
                            f"the meta-parameters became non-finite in the update of iteration {it + 1} (finite "
                            f"meta-loss and gradients: the step itself overflowed); {_kept(ck_path)} — lower "
                            f"train.meta_lr (or set train.clip_grad) {_then(ck_path)}"
                        )
            except (MemoryError, RuntimeError) as e:
                if not _allocation_failure(e):
                    raise
                raise UserError(
                    f"out of memory in iteration {it + 1} ({cfg.train.meta_batch} tasks x {cfg.inner.steps} inner "
                    f"steps on {cfg.train.device}); {_kept(ck_path)} — set train.checkpoint_unroll (same meta-gradient, "
                    f"less memory) {_then(ck_path)}, or lower train.meta_batch or inner.steps in a new --out"
                ) from None
            loss = sum(losses_all) / len(losses_all)
            if not ok:
                bad += 1
                write({"iteration": it + 1, "event": "non-finite", "meta_loss": loss})
                if bad >= cfg.train.max_bad_steps:
                    raise DivergenceError(
                        f"meta-training diverged: {bad} consecutive non-finite meta-losses, gradients or generated "
                        f"hyperparameters up to iteration {it + 1}; {_kept(ck_path)} — lower "
                        f"train.meta_lr (rule.lr: in a new --out) (or set train.clip_grad) {_then(ck_path)}"
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
                for k, v in distributed.gather_tree(world, aux).items():
                    rec[f"{k}_mean"] = float(v.double().mean())  # float64: the same wherever the values were gathered
                write(rec)
                window = window_loss / window_n
                window_loss, window_n, t_window = 0.0, 0, time.perf_counter()
                factor = cfg.train.divergence_factor
                if diverged(window, best, factor):
                    raise DivergenceError(
                        f"meta-training diverged: the meta-loss rose from {best:.4g} to {window:.4g} by iteration {it}; "
                        f"{_kept(ck_path)} — lower train.meta_lr (rule.lr: in a new --out), or set train.clip_grad (or raise "
                        f"train.divergence_factor), {_then(ck_path)}"
                    )
                best = min(best, window)
                windows.append(window)
                if stalled(windows, cfg.train.stall_windows):
                    raise DivergenceError(
                        f"meta-training stalled: the meta-loss stayed at {window:.6g} for {cfg.train.stall_windows} "
                        f"logged windows up to iteration {it}, whatever the tasks (the fine-tuned models output "
                        f"constants); {_kept(ck_path)} — lower rule.scale or rule.lr (an LSTM rule: rule.bias = false) "
                        "and start a new --out, or set train.stall_windows = 0 to go on"
                    )
            stop = False
            if cfg.train.eval_every and it % cfg.train.eval_every == 0:
                from innerloop.evaluate import evaluate_meta

                t_eval = time.perf_counter()
                result = evaluate_meta(cfg, meta, tasks)
                record = {"iteration": it, "elapsed_s": round(elapsed, 3),
                          "eval_s": round(time.perf_counter() - t_eval, 3), "eval": result}
                write(record)
                stop = bool(on_eval and on_eval(record))
                t_window += record["eval_s"]  # the window's tasks/s counts training only
            if it == total or stop:
                checkpoints.write(snapshot(it))
            elif it % cfg.train.checkpoint_every == 0:
                checkpoints.hold(snapshot(it))
            if stop:
                break
            if interrupted.is_set():  # Ctrl-C: the iteration is complete, its state is saved, nothing is lost
                checkpoints.write(snapshot(it))
                raise UserError(f"interrupted: saved a checkpoint at iteration {it} of {total} in {out} — continue "
                                f"with: innerloop train --resume --out {out}")
    except KeyboardInterrupt:
        raise UserError(f"interrupted at iteration {it}; {_kept(ck_path)}: continue with --resume") from None
    finally:
        interrupted.restore()
        if log is not None:
            log.close()
        bar.close()
    if not ck_path.exists():  # nothing trained (train.iterations = 0): keep the untrained baseline evaluable
        checkpoints.write(snapshot(it))
    distributed.barrier(world)  # the final checkpoint is on disk before any rank moves on (e.g. to evaluate it)
    return {"iterations": it, "elapsed_s": elapsed, "executor": meta.mode}


def load_run(run_dir: str | Path, task: dict[str, Any] | None = None):
    """(config, meta-learner with trained weights, evaluation tasks) from a run directory; only the evaluation data
    is read (:func:`innerloop.build.build_eval_tasks`). ``task``: ``[task]`` settings to evaluate under instead (e.g.
    ``{"eval_dataset": "mnist", "eval_split": "test", "shots": 5}``: cross-domain)."""
    from innerloop.build import build_eval_tasks
    from innerloop.config import apply, validate
    from innerloop.loading import load

    meta = load(run_dir)
    cfg = meta.config
    if task:
        image_only = sorted({"eval_dataset", "eval_split", "ways"} & set(task))
        if image_only and cfg.task.family != "episodes":
            raise UserError(f"--dataset, --split and --ways re-configure image-classification runs; {run_dir} is a "
                            f"task.family = {cfg.task.family!r} run (--shots, --query and --tasks do apply)")
        apply(cfg, {"task": task}, where="the evaluation's task settings")
        validate(cfg)
    return cfg, meta, build_eval_tasks(cfg, meta.spec)
