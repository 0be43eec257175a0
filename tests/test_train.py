"""Training runs: files written, exact resume, divergence handling, evaluation output."""

import math
import json
import warnings

import pytest
import torch

from innerloop import config
from innerloop.errors import DivergenceError, UserError
from innerloop.evaluate import evaluate_run
from innerloop.train import train

FAST = ["train.iterations=12", "train.log_every=2", "train.checkpoint_every=4", "train.meta_batch=4",
        "inner.steps=2", "eval.tasks=20", "model.hidden=[8, 8]"]


def cfg(*extra, name="sinusoid/alfa-maml"):
    return config.load(name, FAST + list(extra))


def final_params(run_dir):
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    return state["meta"]


def test_train_writes_run_directory(tmp_path):
    summary = train(cfg(), tmp_path / "run", progress=False)
    assert summary["iterations"] == 12
    run = tmp_path / "run"
    assert (run / "config.toml").is_file() and (run / "checkpoint.pt").is_file()
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in lines] == [2, 4, 6, 8, 10, 12]
    assert all("meta_loss" in l and "tasks_per_s" in l for l in lines)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert {"meta", "optimizer", "rng", "iteration"} <= set(state)
    assert state["iteration"] == 12


@pytest.mark.parametrize("name", ["sinusoid/maml", "sinusoid/alfa-maml", "sinusoid/alfa-random"])
def test_resume_is_exact(tmp_path, name):
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg(name=name), full, progress=False)
    train(config.load(name, FAST + ["train.iterations=6"]), part, progress=False)
    with pytest.raises(UserError, match="config differs"):
        train(cfg("train.seed=5", name=name), part, resume=True, progress=False)  # shaped the run: fixed
    # extending a finished run to more iterations is a resume, and exact; evaluation settings may change
    train(cfg("eval.steps=1", "eval.tasks=7", name=name), part, resume=True, progress=False)
    assert "steps = 1" in (part / "config.toml").read_text().split("[eval]")[1]
    a, b = final_params(full), final_params(part)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (full / "metrics.jsonl").read_text().count("\n") == (part / "metrics.jsonl").read_text().count("\n")


def test_existing_run_needs_resume(tmp_path):
    train(cfg(), tmp_path, progress=False)
    with pytest.raises(UserError, match="--resume"):
        train(cfg(), tmp_path, progress=False)


def test_non_finite_meta_loss_stops_without_corrupting_checkpoint(tmp_path, monkeypatch):
    from innerloop.tasks import SinusoidTasks

    real = SinusoidTasks.train_batch

    def poisoned(self, n, seed, iteration, **kw):
        xs, ys, xq, yq = real(self, n, seed, iteration, **kw)
        return (xs, ys * float("nan"), xq, yq) if iteration >= 5 else (xs, ys, xq, yq)

    monkeypatch.setattr(SinusoidTasks, "train_batch", poisoned)
    c = cfg("train.iterations=40", "train.max_bad_steps=3", "train.checkpoint_every=1")
    with pytest.raises(DivergenceError, match="non-finite"):
        train(c, tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    # the state after iteration 5 was never confirmed healthy (iteration 6's meta-loss was NaN): 4 is kept
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["meta"].values())
    events = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in events if e.get("event") == "non-finite"] == [6, 7, 8]
    # the kept checkpoint still resumes (here: to the same divergence, reported again)
    with pytest.raises(DivergenceError):
        train(c, tmp_path, resume=True, progress=False)


def test_exploding_finite_meta_loss_stops_before_the_checkpoint_is_overwritten(tmp_path, monkeypatch):
    """A blow-up with finite (huge) losses, as ALFA's generated rates can produce: training stops at the
    first logged window far above the best one, and the last checkpoint predates it."""
    from innerloop.tasks import SinusoidTasks

    real = SinusoidTasks.train_batch

    def exploding(self, n, seed, iteration, **kw):
        xs, ys, xq, yq = real(self, n, seed, iteration, **kw)
        return (xs, ys, xq, yq * 1e6) if iteration >= 6 else (xs, ys, xq, yq)

    monkeypatch.setattr(SinusoidTasks, "train_batch", exploding)
    c = cfg("train.iterations=40", "train.log_every=2", "train.checkpoint_every=2")
    # the state after iteration 6 gave iteration 7 an exploded meta-loss: it is never written, 4 is kept
    with pytest.raises(DivergenceError, match="rose from .* by iteration 8; the checkpoint of iteration 4 is kept"):
        train(c, tmp_path, progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["iteration"] == 4
    c_off = cfg("train.iterations=10", "train.divergence_factor=0")
    train(c_off, tmp_path / "off", progress=False)  # the check can be switched off


def test_divergence_reference_is_the_untrained_meta_loss_when_the_first_window_already_exploded(tmp_path, monkeypatch):
    """Issue 19: with log_every = 100 the first window (1.9e25) became the baseline and nothing was ever
    'diverged'. The untrained model's meta-loss (iteration 1) is the first reference."""
    from innerloop.tasks import SinusoidTasks

    real = SinusoidTasks.train_batch

    def exploding(self, n, seed, iteration, **kw):
        xs, ys, xq, yq = real(self, n, seed, iteration, **kw)
        return (xs, ys, xq, yq * 1e6) if iteration >= 3 else (xs, ys, xq, yq)

    monkeypatch.setattr(SinusoidTasks, "train_batch", exploding)
    c = cfg("train.iterations=40", "train.log_every=10", "train.checkpoint_every=1")
    with pytest.raises(DivergenceError, match="by iteration 10; the checkpoint of iteration 2 is kept"):
        train(c, tmp_path, progress=False)


def test_kept_checkpoint_after_a_real_divergence_evaluates_finite(tmp_path):
    """Issue 19's class 3: alfa-maml at meta_lr 0.03, seed 3 (checkpoint every iteration, log every 10) diverges at
    iteration 10; the old guard kept a finite checkpoint that evaluates to MSE 7594 (seed 2: NaN). Every checkpoint is
    now confirmed by the next meta-loss, so checkpoint 9 is kept, and it evaluates to a sane MSE."""
    from innerloop import config
    from innerloop.evaluate import evaluate_run

    c = config.load("sinusoid/alfa-maml", ["train.meta_lr=0.03", "train.log_every=10", "train.checkpoint_every=1",
                                           "train.iterations=300", "eval.tasks=50", "train.seed=3"])
    with pytest.raises(DivergenceError, match="is kept"):
        train(c, tmp_path, progress=False)
    result = evaluate_run(tmp_path)
    assert math.isfinite(result["mean"]) and result["mean"] < 10, result["mean"]


def test_divergence_is_measured_from_the_best_losss_magnitude():
    """C&W meta-losses are negative: -4 -> -2 is noise (the old ratio test fired on any negative best)."""
    from innerloop.train import diverged

    assert not diverged(-2.02, -3.999, 1e4) and not diverged(-5.9, -10.35, 1e4)
    assert diverged(5e4, -4.0, 1e4) and diverged(300.0, 0.02, 1e4) and not diverged(150.0, 0.02, 1e4)
    assert not diverged(1e30, 0.02, 0)


def test_stall_check_fires_on_a_collapsed_run_and_not_on_healthy_noise():
    """The superseded cifar-lft row's logged meta-losses (constant-output CNNs: 20 ln 2 = 13.863 per window)
    against a healthy row's, which move by percents between windows."""
    from innerloop.train import stalled

    collapsed = [2.09e9, 23700.4, 14.2584, 13.863387, 13.863462, 13.863406, 13.863143, 13.863374]
    assert [stalled(collapsed[:i], 5) for i in range(5, 9)] == [False, False, False, True]
    healthy = [15.52, 11.01, 10.31, 10.12, 10.08, 10.11, 9.97]
    assert not any(stalled(healthy[:i], 5) for i in range(1, 8))
    assert not stalled(collapsed, 0) and not stalled(collapsed, 50)


def test_a_run_whose_meta_loss_stops_depending_on_the_tasks_stops_with_a_clear_error(tmp_path, monkeypatch):
    """From iteration 6 every task is the same constant one and next to nothing is learned (meta_lr 1e-12): the logged
    meta-loss is flat, as when the fine-tuned models collapse to constant outputs; training stops naming the fix
    and keeps the last checkpoint."""
    from innerloop.tasks import SinusoidTasks

    real = SinusoidTasks.train_batch

    def collapsing(self, n, seed, iteration, **kw):
        batch = real(self, n, seed, iteration, **kw)
        return tuple(torch.zeros_like(x) for x in batch) if iteration >= 6 else batch

    monkeypatch.setattr(SinusoidTasks, "train_batch", collapsing)
    c = cfg("train.iterations=40", "train.log_every=2", "train.checkpoint_every=2", "train.meta_lr=1e-12")
    with pytest.raises(DivergenceError, match=r"stalled: .* for 5 logged windows up to iteration 16.*checkpoint of "
                                              r"iteration 14 is kept.*rule.scale.*stall_windows = 0"):
        train(c, tmp_path, progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["iteration"] == 14
    summary = train(cfg("train.iterations=20", "train.log_every=2", "train.meta_lr=1e-12", "train.stall_windows=0"),
                    tmp_path / "off", progress=False)  # the check can be switched off
    assert summary["iterations"] == 20


def test_evaluation_is_fixed_and_paired(tmp_path):
    train(cfg(), tmp_path / "a", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # testing with the trained steps says nothing
        r1 = evaluate_run(tmp_path / "a")
        r2 = evaluate_run(tmp_path / "a")
    assert r1 == r2
    assert r1["metric"] == "mse" and r1["tasks"] == 20 and r1["steps"] == 2 and r1["ci95"] > 0
    assert len(r1["values"]) == 20 and abs(sum(r1["values"]) / 20 - r1["mean"]) < 1e-3  # per-task, for pairing
    with pytest.warns(UserWarning, match="exist for 2 step.*--steps 2"):  # ALFA's per-step values end at 2
        r3 = evaluate_run(tmp_path / "a", n_tasks=10, steps=4)
    assert r3["tasks"] == 10 and r3["steps"] == 4
    # the same test tasks for a different method
    from innerloop.build import build_tasks

    t = build_tasks(cfg())
    a = t.eval_set(5, 2020, 100)
    b = build_tasks(cfg(name="sinusoid/maml")).eval_set(5, 2020, 100)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_checkpointed_training_matches_plain(tmp_path):
    train(cfg(), tmp_path / "plain", progress=False)
    train(cfg("train.checkpoint_unroll=1"), tmp_path / "ck", progress=False)
    a, b = final_params(tmp_path / "plain"), final_params(tmp_path / "ck")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_periodic_evaluation_records_training_time_and_can_stop_training(tmp_path):
    """train.eval_every scores the fixed test tasks with the training time so far (evaluation excluded), and
    on_eval can stop the run there with a checkpoint that resumes exactly (the time-to-accuracy benchmark's hook)."""
    seen = []

    def on_eval(record):
        seen.append(record)
        return record["iteration"] >= 6

    summary = train(cfg("train.eval_every=3"), tmp_path / "run", progress=False, on_eval=on_eval)
    assert summary["iterations"] == 6
    assert [r["iteration"] for r in seen] == [3, 6]
    assert all(r["elapsed_s"] > 0 and r["eval_s"] > 0 and r["eval"]["tasks"] == 20 for r in seen)
    assert seen[0]["elapsed_s"] < seen[1]["elapsed_s"] <= round(summary["elapsed_s"], 3) + 1e-3  # records round to ms
    logged = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in logged if "eval" in l] == [3, 6]
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 6
    train(cfg("train.eval_every=3"), tmp_path / "run", resume=True, progress=False)  # goes on to 12
    whole = train(cfg("train.eval_every=3"), tmp_path / "whole", progress=False)
    assert whole["iterations"] == 12
    a, b = final_params(tmp_path / "run"), final_params(tmp_path / "whole")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_staircase_meta_rate_decay_is_a_function_of_the_iteration(tmp_path):
    """train.lr_decay_every / lr_decay_rate (Meta-Dataset's staircase): rate x 0.5 every 4 iterations, and a
    resumed run decays exactly as an uninterrupted one."""
    decay = ["train.lr_decay_every=4", "train.lr_decay_rate=0.5", "train.meta_lr=0.002"]
    train(cfg(*decay), tmp_path / "full", progress=False)
    state = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.002 * 0.5 ** (11 // 4))
    train(config.load("sinusoid/alfa-maml", FAST + decay + ["train.iterations=6"]), tmp_path / "part", progress=False)
    train(cfg(*decay), tmp_path / "part", resume=True, progress=False)
    a, b = final_params(tmp_path / "full"), final_params(tmp_path / "part")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(Exception, match="lr_decay_rate"):
        cfg("train.lr_decay_rate=1.5")
