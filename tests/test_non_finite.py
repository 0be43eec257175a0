"""Nothing non-finite on disk (issue 19, class 2): float settings checked at load, checkpoints written only when
finite, messages that say which checkpoint is actually kept, and no evaluation of non-finite parameters."""

import pytest
import torch

from innerloop import checkpoint as ckpt
from innerloop import config
from innerloop.errors import ConfigError, DivergenceError
from innerloop.train import train
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_train import FAST


@pytest.mark.parametrize("setting,fragment", [
    ("train.meta_lr=inf", "finite"), ("train.meta_lr=nan", "finite"), ("train.meta_lr=1e38", "out of range"),
    ("train.clip_grad=nan", "finite"), ("train.clip_grad=-1.0", "out of range"),
    ("train.divergence_factor=nan", "finite"), ("rule.lr=inf", "finite"), ("task.amplitude=[0.1, inf]", "finite"),
    ("train.meta_batch=1000000000000", "out of range"), ("inner.steps=1000000000", "out of range"),
])
def test_bad_numbers_are_one_line_errors_and_write_nothing(tmp_path, setting, fragment):
    out = tmp_path / "run"
    proc = run_cli("train", "sinusoid/alfa-maml", "--out", str(out), "--set", setting, "--quiet")
    assert_one_line_error(proc, fragment)
    assert not out.exists()


def test_an_update_that_overflows_stops_before_anything_non_finite_is_saved(tmp_path, monkeypatch):
    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def step(self, *a, **k):
        out = real_step(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 7:  # a finite meta-loss and gradient, then an overflowing update
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(DivergenceError, match="the checkpoint of iteration 4 is kept"):
        train(config.load("sinusoid/alfa-maml", FAST), tmp_path / "run", progress=False)
    state = ckpt.load(tmp_path / "run" / "checkpoint.pt")
    assert state["iteration"] == 4 and not ckpt.non_finite(state)


def test_save_refuses_a_non_finite_state(tmp_path):
    with pytest.raises(ValueError, match=r"meta\.w"):
        ckpt.save(tmp_path / "c.pt", {"meta": {"w": torch.tensor([1.0, float("nan")])}, "iteration": 1})
    assert not (tmp_path / "c.pt").exists()
    assert ckpt.non_finite({"a": [torch.ones(2), {"b": torch.tensor(float("-inf"))}], "n": torch.arange(3)}) == ["a[1].b"]


def test_eval_of_non_finite_parameters_is_an_error(tmp_path):
    out = tmp_path / "run"
    train(config.load("sinusoid/maml", FAST), out, progress=False)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    key = next(iter(state["meta"]))
    state["meta"][key] = torch.full_like(state["meta"][key], float("nan"))
    torch.save(state, out / "checkpoint.pt")  # as an older innerloop (or a hand edit) could have left it
    assert_one_line_error(run_cli("eval", str(out)), "non-finite")


def test_resume_of_a_missing_folder_is_an_error(tmp_path):
    assert_one_line_error(run_cli("train", "sinusoid/maml", "--out", str(tmp_path / "nope"), "--resume"), "does not exist")
    assert not (tmp_path / "nope").exists()


def test_config_bounds_apply_to_the_python_api_too():
    with pytest.raises(ConfigError, match="finite"):
        config.load("sinusoid/maml", ["train.meta_lr=inf"])
