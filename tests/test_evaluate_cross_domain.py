"""Re-configured and cross-domain evaluation of a finished run without retraining: the command line
(``innerloop eval RUN --dataset mnist --ways 5 --shots 1``) and the Python path give the same numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import innerloop
from innerloop.cli import main
from innerloop.data import load_dataset
from innerloop.tasks import EpisodeTasks

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "results" / "omniglot" / "runs" / "5w1s-maml"
SHARED = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))
pytestmark = pytest.mark.skipif(not (RUN.is_dir() and (SHARED / "mnist").is_dir()),
                                reason="needs the committed Omniglot run and the shared MNIST data")


def cli_json(args, capsys) -> dict:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_cross_domain_command_line_equals_the_python_path(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("INNERLOOP_DATA", raising=False)
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    result = cli_json(["eval", str(RUN), "--dataset", "mnist", "--ways", "5", "--shots", "1", "--tasks", "30",
                       "--query", "5", "--data", str(SHARED), "--json"], capsys)
    assert result["tasks"] == 30 and len(result["values"]) == 30

    meta = innerloop.load(RUN)  # the Python path, with public pieces only
    test = load_dataset("mnist", SHARED / "mnist", "test")
    tasks = EpisodeTasks(test, ways=5, shots=1, eval_data=test, eval_query=5)
    scores, _ = meta.evaluate(tasks.eval_set(30, seed=meta.config.eval.seed, query=5), steps=meta.test_steps,
                              seed=meta.config.eval.seed)
    assert [100 * v for v in scores.tolist()] == pytest.approx(result["values"], rel=1e-6)  # float32 scores

    five = cli_json(["eval", str(RUN), "--dataset", "mnist", "--shots", "5", "--tasks", "30", "--query", "5",
                     "--data", str(SHARED), "--json"], capsys)
    assert five["mean"] > result["mean"]  # more shots help on the new domain too


def test_reconfigured_evaluation_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    for args, words in [(["--ways", "20"], "outputs 5 classes"), (["--dataset", "cifar10"], "1-channel"),
                        (["--dataset", "nope"], "unknown dataset")]:
        assert main(["eval", str(RUN), "--tasks", "2", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("innerloop: error:") and words in err, err
