"""Fault injection for training runs (issue 19): kill-and-resume is exact, and every bad config, run directory
and checkpoint is one ``innerloop: error:`` line with exit 2 that changes nothing the case does not own.

The long version (50 killed sinusoid runs, 5 Omniglot) is ``benchmarks/faults.py``; archives, images, IDX and
pickles are in ``tests/data/test_hostile_inputs.py``, fine-tuning inputs in ``tests/test_finetune_hostile.py``.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.faultkit import assert_clean_failure, run_cli, snapshot

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "train.meta_batch=3", "--set", "eval.tasks=10", "--set", "model.hidden=[8]", "--set", "inner.steps=1",
        "--quiet", "--no-eval"]


def _faults():
    spec = importlib.util.spec_from_file_location("faults_bench", ROOT / "benchmarks" / "faults.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _trained(path: Path, config: str = "sinusoid/alfa-maml", iterations: int = 4) -> Path:
    res = run_cli(["train", config, "--out", path, "--set", f"train.iterations={iterations}", *TINY])
    assert res.code == 0, res.err
    return path


# --- kill and resume -----------------------------------------------------------------------------------------

def test_killed_runs_resume_bit_identical_in_every_kill_mode(tmp_path):
    """SIGKILL from outside at a random moment, mid-way through a checkpoint's bytes, and after the checkpoint is
    synced but before its rename; each run resumed to the end equals the uninterrupted one bit for bit
    (checkpoint tensors, RNG states, bookkeeping, metrics.jsonl line for line, evaluation), with
    ``checkpoint_every`` (7) not a multiple of ``log_every`` (10)."""
    out = tmp_path / "faults"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "faults.py"), "--runs", "3", "--out", str(out),
                          "--set", "train.iterations=60", "--set", "train.meta_batch=5"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = res.stdout.strip().splitlines()[-1]
    assert summary.startswith("3 killed, 3 bit-identical, 0 corrupt"), res.stdout
    assert "0 time" not in summary and "0 mid-write" not in summary and "0 before-rename" not in summary, summary


def test_the_comparison_sees_a_one_bit_difference(tmp_path):
    """The benchmark's comparison is not vacuous: one flipped bit, a metrics line or a stray temporary file fail it."""
    faults = _faults()
    a = _trained(tmp_path / "a", "sinusoid/maml")
    b = tmp_path / "b"
    import shutil

    shutil.copytree(a, b)
    assert faults.compare(a, b, evaluate=True) is None
    state = torch.load(b / "checkpoint.pt", weights_only=True)
    name, w = next(iter(state["meta"].items()))
    w.view(-1).view(torch.int32)[0] ^= 1
    torch.save(state, b / "checkpoint.pt")
    assert "checkpoint differs at meta." in faults.compare(a, b, evaluate=False)
    shutil.copy(a / "checkpoint.pt", b / "checkpoint.pt")
    with open(b / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 99}\n')
    assert "metrics.jsonl differs" in faults.compare(a, b, evaluate=False)
    shutil.copy(a / "metrics.jsonl", b / "metrics.jsonl")
    (b / "checkpoint.pt.123.abcd.tmp").write_bytes(b"x")
    assert "temporary files" in faults.compare(a, b, evaluate=False)


def test_resume_removes_temporary_files_of_a_killed_writer(tmp_path):
    run = _trained(tmp_path / "run")
    (run / "checkpoint.pt.4242.deadbeef.tmp").write_bytes(b"half a checkpoint")
    res = run_cli(["train", "sinusoid/alfa-maml", "--out", run, "--set", "train.iterations=6", *TINY, "--resume"])
    assert res.code == 0, res.err
    assert not list(run.glob("*.tmp"))


def test_a_full_disk_keeps_the_old_checkpoint_and_leaves_no_temporary_file(tmp_path):
    """``ulimit -f``: the checkpoint write fails with EFBIG; one line, the previous checkpoint intact, no .tmp."""
    run = _trained(tmp_path / "run")
    before = (run / "checkpoint.pt").read_bytes()
    limit = len(before) // 2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # the saved config (checkpoint_every 1000): the checkpoint of the run's last iteration is the write that fails
    res = subprocess.run([sys.executable, "-m", "innerloop", "train", "--out", str(run), "--set", "train.iterations=8",
                          "--quiet", "--no-eval", "--resume"],
                         capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and lines[-1].startswith("innerloop: error:"), res.stderr
    assert lines[:-1] == [f"innerloop: resuming {run} from iteration 4 with train.iterations = 8 (was 4)"]
    assert "--resume" in lines[-1] and "too large" in lines[-1].lower(), lines[-1]  # the disk, not the config
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not list(run.glob("*.tmp"))


# --- bad-input corpus: configs ---------------------------------------------------------------------------------

CONFIG_CASES = {
    "device cuda:x": (["--set", 'train.device="cuda:x"'], "train.device"),
    "device mps": (["--set", 'train.device="mps"'], "train.device"),
    "device tpu": (["--set", 'train.device="tpu"'], "train.device"),
    "meta_batch 1e12": (["--set", "train.meta_batch=1000000000000"], "train.meta_batch"),
    "inner.steps 1e9": (["--set", "inner.steps=1000000000"], "inner.steps"),
    "meta_lr inf": (["--set", "train.meta_lr=inf"], "train.meta_lr"),
    "meta_lr nan": (["--set", "train.meta_lr=nan"], "train.meta_lr"),
    "meta_lr 1e38": (["--set", "train.meta_lr=1e38"], "train.meta_lr"),
    "clip_grad nan": (["--set", "train.clip_grad=nan"], "train.clip_grad"),
    "divergence_factor nan": (["--set", "train.divergence_factor=nan"], "train.divergence_factor"),
    "rule.lr -inf": (["--set", "rule.lr=-inf"], "rule.lr"),
    "iterations negative": (["--set", "train.iterations=-5"], "train.iterations"),
    "hidden empty string": (["--set", 'model.hidden="x"'], "model.hidden"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_settings_fail_cleanly_and_create_nothing(tmp_path, case):
    args, match = CONFIG_CASES[case]
    assert_clean_failure(["train", "sinusoid/alfa-maml", "--out", tmp_path / "run", "--set", "train.iterations=3",
                          "--set", "eval.tasks=5", *args, "--quiet"], tmp_path, match=match)
    assert not (tmp_path / "run").exists()


CONFIG_FILES = {
    "not UTF-8": (b"[train]\niterations = 3 # \xff\xfe\n", "UTF-8"),
    "broken TOML": (b"[train\niterations = 3\n", "TOML"),
    "binary junk": (bytes(range(256)), "config"),
    "unknown section": (b"[trainer]\niterations = 3\n", "trainer"),
    "wrong type": (b"[train]\niterations = \"many\"\n", "train.iterations"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILES))
def test_bad_config_files_fail_cleanly(tmp_path, case):
    body, match = CONFIG_FILES[case]
    (tmp_path / "c.toml").write_bytes(body)
    assert_clean_failure(["train", tmp_path / "c.toml", "--out", tmp_path / "run", "--quiet"], tmp_path,
                         owned=("c.toml",), match=match)
    assert not (tmp_path / "run").exists()


def test_a_config_file_that_is_a_folder_fails_cleanly(tmp_path):
    (tmp_path / "c.toml").mkdir()
    assert_clean_failure(["train", tmp_path / "c.toml", "--out", tmp_path / "run"], tmp_path, match="c.toml")


# --- bad-input corpus: run directories ------------------------------------------------------------------------

def _damage_config(body: bytes):
    def damage(run: Path) -> None:
        (run / "config.toml").write_bytes(body)
    return damage


def _checkpoint(obj):
    def damage(run: Path) -> None:
        torch.save(obj(run) if callable(obj) else obj, run / "checkpoint.pt")
    return damage


def _drop(key: str):
    def state(run: Path):
        s = torch.load(run / "checkpoint.pt", weights_only=True)
        del s[key]
        return s
    return state


def _truncate(run: Path) -> None:
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 3])


def _other_config(run: Path) -> None:
    other = _trained(run.parent / "other", "sinusoid/maml")
    (run / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())


def _wrong_shapes(run: Path) -> None:
    s = torch.load(run / "checkpoint.pt", weights_only=True)
    name = next(iter(s["meta"]))
    s["meta"][name] = torch.zeros(3, 3)
    torch.save(s, run / "checkpoint.pt")


def _code_in_pickle(run: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {run.parent / 'pwned'}",))
    torch.save({"meta": Boom()}, run / "checkpoint.pt")


RUN_DIR_CASES = {
    "config.toml not UTF-8": (_damage_config(b"[train]\n\xff\xfe = 1\n"), "UTF-8"),
    "config.toml broken TOML": (_damage_config(b"[train\n"), "TOML"),
    "config.toml another config": (_damage_config(b"[rule]\nkind = \"sgd\"\n"), "config differs"),
    "checkpoint is a list": (_checkpoint([1, 2, 3]), "checkpoint"),
    "checkpoint is a tensor": (_checkpoint(torch.zeros(3)), "checkpoint"),
    "checkpoint without optimizer": (_checkpoint(_drop("optimizer")), "optimizer"),
    "checkpoint without rng": (_checkpoint(_drop("rng")), "rng"),
    "checkpoint truncated": (_truncate, "corrupt"),
    "checkpoint from another config": (_other_config, "does not match"),
    "checkpoint with wrong shapes": (_wrong_shapes, "does not match"),
    "checkpoint runs code when unpickled": (_code_in_pickle, "corrupt"),
    "checkpoint is empty": (lambda run: (run / "checkpoint.pt").write_bytes(b""), "corrupt"),
    "checkpoint is a folder": (lambda run: ((run / "checkpoint.pt").unlink(), (run / "checkpoint.pt").mkdir()),
                               "checkpoint"),
}


@pytest.mark.parametrize("case", sorted(RUN_DIR_CASES))
def test_resume_of_a_damaged_run_fails_cleanly_and_changes_nothing(tmp_path, case):
    damage, match = RUN_DIR_CASES[case]
    run = _trained(tmp_path / "run")
    damage(run)
    assert_clean_failure(["train", "sinusoid/alfa-maml", "--out", run, "--set", "train.iterations=6", *TINY,
                          "--resume"], tmp_path, owned=("other",), match=match)
    assert not (tmp_path / "pwned").exists()


EVAL_CASES = ["checkpoint is a list", "checkpoint is empty", "checkpoint truncated",
              "checkpoint runs code when unpickled", "checkpoint with wrong shapes", "config.toml not UTF-8",
              "config.toml broken TOML", "checkpoint is a folder"]


@pytest.mark.parametrize("case", EVAL_CASES)
def test_eval_of_a_damaged_run_fails_cleanly(tmp_path, case):
    damage, _ = RUN_DIR_CASES[case]
    run = _trained(tmp_path / "run")
    damage(run)
    assert_clean_failure(["eval", run, "--tasks", "3"], tmp_path, owned=("other",))
    assert not (tmp_path / "pwned").exists()


def test_out_that_is_a_file_fails_cleanly(tmp_path):
    (tmp_path / "f").write_text("mine")
    assert_clean_failure(["train", "sinusoid/maml", "--out", tmp_path / "f", *TINY], tmp_path, match="not a directory")
    assert_clean_failure(["train", "sinusoid/maml", "--out", tmp_path / "f" / "run", *TINY], tmp_path,
                         match="run directory")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_out_under_proc_fails_cleanly(tmp_path):
    assert_clean_failure(["train", "sinusoid/maml", "--out", "/proc/innerloop-run", *TINY], tmp_path)


def test_a_failed_start_leaves_an_existing_folder_as_found(tmp_path):
    """Data missing for an Omniglot run: the folder (with the user's own file in it) is left exactly as it was."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("my notes")
    assert_clean_failure(["train", "omniglot/maml", "--out", run, "--set", f"task.root=\"{tmp_path / 'none'}\"",
                          "--quiet"], tmp_path)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_a_failed_start_removes_the_folders_it_created(tmp_path):
    assert_clean_failure(["train", "omniglot/maml", "--out", tmp_path / "a" / "b" / "run",
                          "--set", f"task.root=\"{tmp_path / 'none'}\"", "--quiet"], tmp_path)
    assert not (tmp_path / "a").exists()


def test_resume_of_a_run_with_another_config_changes_nothing(tmp_path):
    run = _trained(tmp_path / "run")
    before = snapshot(run)
    assert_clean_failure(["train", "sinusoid/alfa-maml", "--out", run, "--set", "train.iterations=6", *TINY,
                          "--set", "rule.lr=0.02", "--resume"], tmp_path, match="config differs")
    assert snapshot(run) == before
