"""The LFT reproduction figures (issue 22): labelled axes, legible legends outside the data, the same style
per method in every panel, log axes where the values span orders of magnitude. Synthetic rows, no training."""

from innerloop.plots import METHOD_COLORS
from innerloop.reproduce import lft_classification, lft_sinusoid, lft_uap
from tests.plotcheck import assert_readable


def _panels(fig):
    return [ax for ax in fig.axes if ax.has_data()]


def _method_lines(ax):
    return {l.get_label(): l for l in ax.get_lines() if l.get_label().split(",")[0] in METHOD_COLORS}


def test_sinusoid_figure_is_log_log_with_one_line_per_method_per_oracle(tmp_path):
    results = [{"method": m, "setting": {"oracle": o}, "tasks": 500,
                "by_steps": [{"steps": s, "mean": (3.0 if m != "MAML" else 1.0) * (1 + s / 10) ** (k - 1), "std": 2.0}
                             for s in [0, *lft_sinusoid.STEPS]]}
               for o in ("fo", "zo") for k, m in enumerate(["LFT", "L2O", "MAML"])]
    fig = lft_sinusoid.figure(results)
    assert_readable(fig)
    axes = _panels(fig)
    assert len(axes) == 2 and all(ax.get_xscale() == ax.get_yscale() == "log" for ax in axes)
    assert all("MSE" in ax.get_ylabel() for ax in axes)
    for ax in axes:
        lines = _method_lines(ax)
        assert sorted(lines) == ["L2O", "LFT", "MAML"]
        assert all(len(l.get_xdata()) == len(lft_sinusoid.STEPS) for l in lines.values())  # step 0 is left out
        assert all(l.get_color() == METHOD_COLORS[m] for m, l in lines.items())
    lft_sinusoid.plot(results, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_uap_figure_labels_every_panel_and_styles_method_by_colour_and_training_data_by_line():
    rows = [{"method": m, "setting": {"oracle": o, "test": t, "train": tr}, "tasks": 100,
             "asr_by_step": [min(100.0, 5.0 * s) for s in range(21)]}
            for o in lft_uap.ORACLES for t in lft_uap.TEST for tr in lft_uap.TRAIN for m in ("LFT", "L2O")]
    fig = lft_uap.figure(rows)
    assert_readable(fig)
    axes = _panels(fig)
    assert len(axes) == len(lft_uap.ORACLES) * len(lft_uap.TEST)
    assert all(ax.get_ylabel() == "attack success rate (%)" for ax in axes)
    for ax in axes:
        lines = _method_lines(ax)
        assert len(lines) == 4
        assert {l.get_linestyle() for l in lines.values()} == {"-", "--"}
        assert all(l.get_color() == METHOD_COLORS[k.split(",")[0]] for k, l in lines.items())
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-1] == "90% threshold" and len(labels) == 5


def test_classification_figure_puts_step_0_on_a_symlog_axis_and_chance_in_the_legend():
    rows = [{"method": m, "setting": {"test": t, "train": tr, "steps": s}, "mean": 50 + s / 4, "ci95": 1.0,
             "tasks": 500}
            for t in lft_classification.TEST for tr in lft_classification.TRAIN for m in ("LFT", "L2O")
            for s in lft_classification.STEPS]
    rows += [{"method": "MAML", "setting": {"test": "CIFAR-10 (CNN)", "train": "CIFAR-10 (CNN)", "steps": s},
              "mean": 55.0, "ci95": 1.0, "tasks": 500} for s in lft_classification.STEPS]
    fig = lft_classification.figure(rows)
    assert_readable(fig)
    axes = _panels(fig)
    assert len(axes) == len(lft_classification.TEST)
    for ax in axes:
        assert ax.get_xscale() == "symlog" and "accuracy" in ax.get_ylabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in lft_classification.STEPS]
        assert all(l.get_xdata()[0] == 0 for l in _method_lines(ax).values())  # step 0 at 0, not moved to 0.5
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-1] == "chance (50%)" and len(labels) == 6
