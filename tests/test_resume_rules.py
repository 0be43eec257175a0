"""``--resume`` restores everything from the run directory (issue 22): the saved config is the truth, only
``train.iterations`` and ``eval.*`` may change (each change printed), it never starts a run (``--resume-or-start``
does), a differing config names every differing key, and Ctrl-C saves a checkpoint at the interruption point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from innerloop.cli import main

TINY = ["--set", "train.log_every=2", "--set", "train.checkpoint_every=2", "--set", "eval.tasks=2", "--quiet",
        "--no-eval"]


def files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("innerloop: error:"), err
    return lines[0]


def test_resume_never_starts_a_run(tmp_path, capsys):
    assert main(["train", "sinusoid/maml", "--out", str(tmp_path / "new"), "--resume", *TINY]) == 2
    assert "does not exist" in one_error(capsys) and not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("mine")
    assert main(["train", "sinusoid/maml", "--out", str(tmp_path / "empty"), "--resume", *TINY]) == 2
    line = one_error(capsys)
    assert "holds no checkpoint" in line and str(tmp_path / "empty") in line and "--resume-or-start" in line
    assert files(tmp_path / "empty") == {"notes.txt": b"mine"}


def test_resume_or_start_starts_then_continues(tmp_path, capsys):
    run = str(tmp_path / "run")
    args = ["train", "sinusoid/maml", "--out", run, "--resume-or-start", "--set", "train.iterations=2", *TINY]
    assert main(args) == 0
    assert torch.load(Path(run) / "checkpoint.pt", weights_only=True)["iteration"] == 2
    assert main(args[:-len(TINY) - 2] + ["--set", "train.iterations=4", *TINY]) == 0
    assert torch.load(Path(run) / "checkpoint.pt", weights_only=True)["iteration"] == 4
    assert "from iteration 2 with train.iterations = 4 (was 2)" in capsys.readouterr().err
    assert main(["train", "--out", run, "--resume", "--resume-or-start", *TINY]) == 2
    assert "not both" in one_error(capsys)


def test_the_saved_config_is_the_truth(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "sinusoid/maml", "--out", run, "--set", "train.iterations=4", "--set",
                 "model.hidden=[16]", *TINY]) == 0
    capsys.readouterr()
    # nothing repeated: the saved config (4 iterations, hidden [16]) — done, nothing changes, nothing printed
    before = files(Path(run))
    assert main(["train", "--out", run, "--resume", *TINY]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert torch.load(Path(run) / "checkpoint.pt", weights_only=True)["iteration"] == 4
    assert files(Path(run))["config.toml"] == before["config.toml"]
    # extended: the change is printed; the model is still the saved one
    assert main(["train", "--out", run, "--resume", "--set", "train.iterations=6", *TINY]) == 0
    err = capsys.readouterr().err
    assert "from iteration 4 with train.iterations = 6 (was 4)" in err
    state = torch.load(Path(run) / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 6 and any(v.shape[0] == 16 for v in state["meta"].values())
    # the config repeated without its --set: every differing key named with both values
    assert main(["train", "sinusoid/maml", "--out", run, "--resume", *TINY]) == 2
    line = one_error(capsys)
    assert "model.hidden: [16] (saved) vs [40, 40] (given)" in line and "without CONFIG" in line
    # a setting that shaped the run cannot change
    assert main(["train", "--out", run, "--resume", "--set", "rule.lr=0.5", *TINY]) == 2
    assert "--set rule.lr cannot change on --resume" in one_error(capsys)
    assert main(["train", "--out", run, "--resume", "--set", "eval.steps=3", *TINY]) == 0  # eval.* may change
    assert "eval.steps = 3 (was None)" in capsys.readouterr().err
    # a stopped run's recovery: a lower meta-learning rate reaches Adam (not the checkpoint's saved rate)
    assert main(["train", "--out", run, "--resume", "--set", "train.iterations=8", "--set", "train.meta_lr=0.0002",
                 *TINY]) == 0
    assert "train.meta_lr = 0.0002 (was 0.001)" in capsys.readouterr().err
    state = torch.load(Path(run) / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 8 and state["optimizer"]["param_groups"][0]["lr"] == 0.0002


def test_train_needs_a_config_unless_resuming(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x"), *TINY]) == 2
    assert "needs a CONFIG" in one_error(capsys)


def _terminal_signals() -> None:
    """The child starts with the default SIGINT / SIGTERM dispositions a shell gives a foreground job, whatever this
    process inherited (pytest-xdist workers ignore SIGINT, and an ignored SIGINT is inherited: Ctrl-C never reaches
    such a child, by design of innerloop's handler, which leaves a non-default disposition alone)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.skipif(sys.platform == "win32", reason="signals to a child process")
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_saves_a_checkpoint_where_it_stopped_and_resume_is_exact(tmp_path, sig):
    """SIGINT (Ctrl-C) or SIGTERM (kill, a scheduler) mid-training (long before any periodic checkpoint): the
    iteration is finished, a checkpoint written and the process exits with one line; resumed, the run ends exactly
    where an uninterrupted one does."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sets = ["--set", 'train.dtype="float64"', "--set", "train.checkpoint_every=1000000", "--set", "train.log_every=5",
            "--quiet", "--no-eval"]
    run = tmp_path / "run"
    job = subprocess.Popen([sys.executable, "-m", "innerloop", "train", "sinusoid/maml", "--out", str(run),
                            "--set", "train.iterations=100000", *sets], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env, preexec_fn=_terminal_signals)
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None and not (
            (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.1)
    job.send_signal(getattr(signal, sig))
    _, err = job.communicate(timeout=120)
    assert job.returncode == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("innerloop: error: interrupted: saved a checkpoint at iteration"), err
    stopped = torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]
    assert stopped >= 10 and f"iteration {stopped} of 100000" in line and "--resume" in line
    target = stopped + 3
    done = subprocess.run([sys.executable, "-m", "innerloop", "train", "--out", str(run), "--resume", "--set",
                           f"train.iterations={target}", "--quiet", "--no-eval"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    ref = subprocess.run([sys.executable, "-m", "innerloop", "train", "sinusoid/maml", "--out", str(tmp_path / "ref"),
                          "--set", f"train.iterations={target}", *sets], capture_output=True, text=True, env=env,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr
    a = torch.load(run / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == target
    assert all(torch.equal(v, b["meta"][k]) for k, v in a["meta"].items())
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k not in ("tasks_per_s", "elapsed_s")}
                       for l in p.read_text().splitlines()]
    assert strip(run / "metrics.jsonl") == strip(tmp_path / "ref" / "metrics.jsonl")
