"""Small first-hour fixes (issue 22): ``train --data``, a hint when ``task.root`` names the folder above the dataset,
and ``finetune --model`` finding a module in the current folder without PYTHONPATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from innerloop.cli import main

SHARED = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))
needs_omniglot = pytest.mark.skipif(not (SHARED / "omniglot").is_dir(), reason="shared Omniglot data not present")
TINY = ["--set", "train.iterations=1", "--set", "train.meta_batch=2", "--set", "model.filters=4", "--set",
        "task.query=1", "--set", "eval.tasks=2", "--quiet", "--no-eval"]


@needs_omniglot
def test_train_takes_data(tmp_path, monkeypatch):
    monkeypatch.delenv("INNERLOOP_DATA", raising=False)
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    assert main(["train", "omniglot/maml", "--out", str(tmp_path / "run"), "--data", str(SHARED), *TINY]) == 0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    task = (tmp_path / "run" / "config.toml").read_text().split("[task]")[1].split("\n[")[0]
    assert 'root = ""' in task and str(SHARED) not in task  # the data folder is not baked in: the run resumes anywhere


@needs_omniglot
def test_a_root_one_level_too_high_gets_a_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("INNERLOOP_DATA", raising=False)
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    assert main(["train", "omniglot/maml", "--out", str(tmp_path / "run"), "--set", f'task.root="{SHARED}"',
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the dataset's folder is {SHARED / 'omniglot'}" in err
    assert not (tmp_path / "run").exists()


def test_finetune_model_from_the_current_folder(tmp_path, monkeypatch):
    from innerloop.finetune_cli import load_factory

    (tmp_path / "my_models_xyz.py").write_text("from torch import nn\ndef make():\n    return nn.Linear(1, 1)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])  # a console script's path
    assert load_factory("my_models_xyz:make")().in_features == 1
