"""One writer per run directory (issue 19, class 1): an OS lock for the life of ``train``, stale locks from
killed processes recovered, unique temporary files, consistent reads while a run is written."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from innerloop import checkpoint as ckpt
from innerloop.errors import UserError
from innerloop.runlock import RunLock
from tests.test_cli import assert_one_line_error, run_cli

FAST = ["--set", "train.meta_batch=3", "--set", "eval.tasks=10", "--set", "model.hidden=[8]", "--set", "inner.steps=1",
        "--quiet", "--no-eval"]


def hold_lock(run_dir):
    """A process that holds the run's lock until killed (like a long 'innerloop train')."""
    code = ("import sys, time; from innerloop.runlock import RunLock\n"
            "with RunLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


def test_second_writer_gets_one_line_error_naming_the_pid_and_changes_nothing(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", "sinusoid/maml", "--out", str(run), "--set", "train.iterations=4", *FAST).returncode == 0
    before = snapshot(run)
    holder = hold_lock(run)
    try:
        proc = run_cli("train", "sinusoid/maml", "--out", str(run), "--resume", "--set", "train.iterations=8", *FAST)
        assert_one_line_error(proc, f"PID {holder.pid}")
        assert snapshot(run) == before  # metrics, config and checkpoint untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the killed holder left its .lock file behind: the kernel released the lock, the next writer proceeds
    assert (run / ".lock").exists()
    proc = run_cli("train", "sinusoid/maml", "--out", str(run), "--resume", "--set", "train.iterations=8", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert ckpt.load(run / "checkpoint.pt")["iteration"] == 8


def test_two_trains_started_together_one_wins_and_its_run_is_complete(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "innerloop.cli", "train", "sinusoid/maml", "--out", str(run),
            "--set", "train.iterations=60", "--set", "train.checkpoint_every=1", "--set", "train.log_every=5", *FAST]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert loser.startswith("innerloop: error:") and len(loser.strip().splitlines()) == 1
    assert "being written by another" in loser or "already holds a run" in loser
    assert ckpt.load(run / "checkpoint.pt")["iteration"] == 60
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in lines] == list(range(5, 61, 5))
    assert not list(run.glob("*.tmp"))


def test_lock_is_exclusive_within_a_process_too(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(UserError, match=f"PID {os.getpid()}"):
            RunLock(tmp_path).__enter__()
    with RunLock(tmp_path):  # released on exit
        pass


def test_temporary_files_are_unique_per_writer_and_removed_on_failure(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(os.path.basename(a)), real_replace(a, b)))
    ckpt.atomic_write(tmp_path / "f", lambda f: f.write(b"1"))
    ckpt.atomic_write(tmp_path / "f", lambda f: f.write(b"2"))
    assert len(set(seen)) == 2 and all(str(os.getpid()) in s for s in seen)

    def disk_full(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        ckpt.atomic_write(tmp_path / "f", disk_full)
    assert (tmp_path / "f").read_bytes() == b"2"  # the old file survives
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temporary file left


def test_eval_while_training_reads_complete_checkpoints(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "innerloop.cli", "train", "sinusoid/maml", "--out", str(run),
                             "--set", "train.iterations=150", "--set", "train.checkpoint_every=1", *FAST],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    reads = 0
    try:
        while proc.poll() is None:
            if (run / "checkpoint.pt").exists():
                state = ckpt.load(run / "checkpoint.pt")  # a UserError here would be a torn read
                assert state["iteration"] >= 1
                reads += 1
            time.sleep(0.005)
    finally:
        proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert reads > 0
