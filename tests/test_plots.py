"""``innerloop plot``: ALFA's generated hyperparameters per step and layer (Figure 3)."""

import pytest
import torch

from innerloop import config
from innerloop.cli import main
from innerloop.plots import generated_hyperparameters, hyperparameter_figure
from innerloop.train import train
from tests.plotcheck import assert_readable

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


# --- the figure itself (issue 22: readable at a glance); synthetic data, no training ---

LAYERS = ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"]


def _data(steps, layers=LAYERS, tasks=4, scale=None, wd=True):
    g = torch.Generator().manual_seed(0)
    scale = torch.logspace(-4, 0, len(layers)) if scale is None else scale  # spans orders of magnitude
    lr = (torch.rand(tasks, steps, len(layers), generator=g) + 0.5) * scale
    return {"layers": list(layers), "lr": lr, "wd": -lr.flip(-1) if wd else None, "rule": "alfa"}


def test_multi_step_figure_draws_one_labelled_line_per_layer():
    fig = hyperparameter_figure(_data(steps=5), title="run-x")
    assert_readable(fig)
    axes = [ax for ax in fig.axes if ax.has_data()]
    assert len(axes) == 2
    assert "learning rate" in axes[0].get_ylabel() and "weight decay" in axes[1].get_ylabel()
    assert all(ax.get_xlabel() == "inner step j" for ax in axes)
    for ax in axes:
        lines = [l for l in ax.get_lines() if l.get_label() in LAYERS]
        assert [l.get_label() for l in lines] == LAYERS
        assert all(len(l.get_xdata()) == 5 and l.get_linestyle() != "None" for l in lines)  # lines, not dots
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == LAYERS
    assert "run-x" in fig.get_suptitle() and "5 inner steps" in fig.get_suptitle()


def test_one_step_figure_is_a_per_layer_bar_chart_named_by_layer():
    fig = hyperparameter_figure(_data(steps=1))
    assert_readable(fig)
    for ax in [ax for ax in fig.axes if ax.has_data()]:
        assert len(ax.patches) == len(LAYERS)  # one bar per layer, not a column of dots at x = 1
        assert [t.get_text() for t in ax.get_xticklabels()] == LAYERS
        assert all(t.get_rotation() > 0 for t in ax.get_xticklabels())
        assert "layer" in ax.get_xlabel()
        assert not any(l.get_label() in LAYERS for l in ax.get_lines())


def test_values_spanning_orders_of_magnitude_get_a_symlog_axis_and_narrow_ones_a_linear_axis():
    wide = hyperparameter_figure(_data(steps=3))
    narrow = hyperparameter_figure(_data(steps=3, scale=torch.linspace(1.0, 2.0, len(LAYERS))))
    assert [ax.get_yscale() for ax in wide.axes if ax.has_data()] == ["symlog", "symlog"]
    assert [ax.get_yscale() for ax in narrow.axes if ax.has_data()] == ["linear", "linear"]


def test_many_layers_stay_distinguishable_and_an_lslr_run_has_one_panel():
    layers = [f"blocks.{i}.conv.{k}" for i in range(12) for k in ("weight", "bias")]
    fig = hyperparameter_figure(_data(steps=4, layers=layers, wd=False) | {"rule": "lslr"})
    assert_readable(fig)
    (ax,) = [ax for ax in fig.axes if ax.has_data()]
    styles = {(l.get_color() if isinstance(l.get_color(), str) else tuple(l.get_color()), l.get_linestyle(),
               l.get_marker()) for l in ax.get_lines() if l.get_label() in layers}
    assert len(styles) == len(layers)
