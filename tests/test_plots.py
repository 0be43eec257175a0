"""``innerloop plot``: ALFA's generated hyperparameters per step and layer (Figure 3)."""

import pytest

from innerloop import config
from innerloop.cli import main
from innerloop.plots import generated_hyperparameters
from innerloop.train import train

FAST = ["train.iterations=3", "train.meta_batch=2", "inner.steps=3", "model.hidden=[8, 8]", "eval.tasks=10"]


def test_plot_writes_png_with_per_step_per_layer_values(tmp_path):
    run = tmp_path / "run"
    train(config.load("sinusoid/alfa-maml", FAST), run, progress=False)
    data = generated_hyperparameters(run, tasks=7)
    assert data["lr"].shape == (7, 3, 6) and data["wd"].shape == (7, 3, 6)
    assert data["lr"].std(0).sum() > 0  # generated per task, not constants
    assert main(["plot", str(run), "--tasks", "5"]) == 0
    png = run / "hyperparameters.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_rule_without_generated_hyperparameters_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "run"
    train(config.load("sinusoid/maml", FAST), run, progress=False)
    assert main(["plot", str(run)]) == 2
    assert "use an ALFA run" in capsys.readouterr().err
