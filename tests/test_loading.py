"""``innerloop.load``: a trained run as a ready meta-learner without its data; adapt and predict on a user's own
examples; new runs store what the model was built for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import innerloop
from innerloop import config as C
from innerloop.errors import UserError
from innerloop.train import train

REPO = Path(__file__).resolve().parents[1]
OMNIGLOT_RUN = REPO / "results" / "omniglot" / "runs" / "20w1s-maml"
SHARED = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """No dataset configured, an empty cache, and any dataset read fails the test."""
    import innerloop.build as build

    monkeypatch.delenv("INNERLOOP_DATA", raising=False)
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "empty-cache"))

    def refuse(*a, **k):
        raise AssertionError("a dataset was read")

    monkeypatch.setattr(build, "_load", refuse)
    monkeypatch.setattr("innerloop.data.load_dataset", refuse)


def strokes(n: int = 20) -> torch.Tensor:
    """``n`` hand-made 28x28 'characters': a horizontal or vertical stroke at a different place each."""
    images = torch.zeros(n, 1, 28, 28)
    for k in range(n):
        r = 3 + k
        if k % 2:
            images[k, 0, r, 4:24] = 1.0
        else:
            images[k, 0, 4:24, r] = 1.0
    return images


@pytest.mark.skipif(not OMNIGLOT_RUN.is_dir(), reason="the committed Omniglot run is not in this checkout")
def test_load_an_omniglot_run_without_data_adapt_on_20_images_and_predict(no_data):
    meta = innerloop.load(OMNIGLOT_RUN)
    assert meta.config.task.dataset == "omniglot" and meta.config.task.ways == 20
    x, y = strokes(), torch.arange(20)
    adapted = meta.adapt(x, y)
    assert adapted.steps == meta.config.inner.steps and len(adapted.losses) == adapted.steps
    after = float(meta.learner.loss(adapted.params, x, y))
    assert after < adapted.losses[0]  # the inner loop fits the support set
    logits = adapted.predict(x)
    assert logits.shape == (20, 20) and torch.isfinite(logits).all()
    assert torch.equal(adapted.classify(x), logits.argmax(-1))
    assert adapted.score(x, y) == pytest.approx(float((logits.argmax(-1) == y).float().mean()))
    assert list(adapted.params) == [n for n, _ in meta.learner.model.named_parameters()]
    model = adapted.module()  # a plain nn.Module with the adapted weights
    assert isinstance(model, torch.nn.Module) and torch.allclose(model(x), logits)
    again = meta.adapt(x, y)
    assert torch.equal(again.predict(x), logits)  # deterministic
    untouched = innerloop.load(OMNIGLOT_RUN)
    assert all(torch.equal(a, b) for a, b in zip(meta.state_dict().values(), untouched.state_dict().values()))
    assert meta.adapt(x, y, steps=0).predict(x).shape == (20, 20)


def test_new_runs_store_their_model_spec_and_load_anywhere(tmp_path, monkeypatch):
    if not (SHARED / "omniglot").is_dir():
        pytest.skip("shared Omniglot data not present")
    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    sets = ["train.iterations=1", "train.meta_batch=2", "model.filters=4", "task.query=1", "train.workers=1",
            "eval.tasks=2", 'train.dtype="float64"']
    train(C.load("omniglot/maml", sets), tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["spec"] == {"image_shape": [1, 28, 28], "ways": 5}
    monkeypatch.delenv("INNERLOOP_DATA")
    meta = innerloop.load(tmp_path / "run", dtype="float32")
    assert next(meta.parameters()).dtype == torch.float32
    assert meta.adapt(strokes(5), torch.arange(5)).predict(strokes(3)).dtype == torch.float32


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no run directory"):
        innerloop.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.toml"):
        innerloop.load(tmp_path / "empty")


def test_a_sinusoid_run_adapts_on_a_users_points(tmp_path):
    train(C.load("sinusoid/maml", ["train.iterations=3", "eval.tasks=2"]), tmp_path / "run", progress=False)
    meta = innerloop.load(tmp_path / "run")
    x = torch.linspace(-5, 5, 10).unsqueeze(1)
    adapted = meta.adapt(x, torch.sin(x))
    assert adapted.predict(torch.zeros(4, 1)).shape == (4, 1)
    with pytest.raises(Exception, match="steps"):
        meta.adapt(x, torch.sin(x), steps=-1)


def test_every_committed_run_loads_without_data(no_data, monkeypatch):
    """All run folders under results/ — written by every earlier version of the checkpoint format (an init keyed
    ``init.`` before task families existed, no stored model spec, sorted optimizer state) — load with no dataset."""
    monkeypatch.setenv("INNERLOOP_VICTIMS", str(REPO / "results" / "victims"))
    runs = sorted(p.parent for p in (REPO / "results").rglob("checkpoint.pt"))
    if not runs:
        pytest.skip("no committed runs in this checkout")
    for run in runs:
        meta = innerloop.load(run)
        assert meta.run_dir == run


def test_alfa_runs_saved_before_the_robust_default_still_load_in_the_authors_form():
    """``rule.form`` defaults to "robust" (issue 24); a run whose config.toml has no ``rule.form`` was trained in the
    paper form and must load as one (its checkpoint holds alpha0, not log_alpha0); the shipped paper configs pin it."""
    from innerloop.train import _read_config

    run = REPO / "results" / "alfa-sinusoid" / "runs" / "main-alfa-maml-2x40-k5"
    assert "form" not in (run / "config.toml").read_text()
    assert C.Config().rule.form == "robust" and _read_config(run).rule.form == "paper"
    meta = innerloop.load(run)
    assert hasattr(meta.rule, "alpha0") and not hasattr(meta.rule, "log_alpha0")
    assert C.load("sinusoid/alfa-maml").rule.form == "paper"
    assert C.load("sinusoid/maml", ['rule.kind="alfa"']).rule.form == "robust"


def test_a_non_alfa_run_saved_with_the_old_form_default_still_resumes(tmp_path):
    """Runs saved while ``rule.form`` defaulted to "paper" hold ``form = "paper"`` whatever their rule; for a rule
    that does not read it, that must not make ``--resume`` see a changed config."""
    from innerloop.train import _read_config, train

    run = tmp_path / "run"
    cfg = C.load("sinusoid/maml", ["train.iterations=2", "eval.tasks=2"])
    train(cfg, run, progress=False)
    text = (run / "config.toml").read_text().replace('form = "robust"', 'form = "paper"')
    (run / "config.toml").write_text(text)
    assert _read_config(run).rule.form == "robust"
    cfg = C.load("sinusoid/maml", ["train.iterations=3", "eval.tasks=2"])
    assert train(cfg, run, resume=True, progress=False)["iterations"] == 3
