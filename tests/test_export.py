"""``meta.export``: the learned initialisation as a plain state_dict of the user's module (safetensors, or
torch.save without it) and the rule's meta-parameters; round-trips into fresh modules with identical outputs."""

from __future__ import annotations

import json

import pytest
import torch

import innerloop.export as export_mod
from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError, UserError
from innerloop.export import load_state_dict_file
from innerloop.inits import LearnedInit, RandomInit
from innerloop.models import MLP, Conv4
from innerloop.rules import ALFA, CoordinateLSTM


def trained_meta():
    torch.manual_seed(0)
    model = Conv4(1, 5, filters=4, image_size=16).double()
    learner = Learner(model, "cross_entropy")
    rule = ALFA({n: model.get_parameter(n).shape for n in learner.inner}, 2, form="paper").double()
    meta = MetaLearner(learner, LearnedInit(model).double(), rule, steps=2)
    with torch.no_grad():  # "training": move every meta-parameter away from the model's own weights
        for p in meta.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return meta, model


@pytest.mark.parametrize("safetensors", [True, False])
def test_export_round_trips_into_a_fresh_module(tmp_path, monkeypatch, safetensors):
    if safetensors:
        pytest.importorskip("safetensors")
    else:
        monkeypatch.setattr(export_mod, "_has_safetensors", lambda: False)
    meta, model = trained_meta()
    files = meta.export(tmp_path / "out")
    suffix = ".safetensors" if safetensors else ".pt"
    assert files["init"].endswith("init" + suffix) and files["rule"].endswith("rule" + suffix)
    init = load_state_dict_file(files["init"])
    assert list(init) == list(model.state_dict())  # the module's own names, in its order
    fresh = Conv4(1, 5, filters=4, image_size=16).double()
    fresh.load_state_dict(init)
    x = torch.randn(7, 1, 16, 16, dtype=torch.float64)
    theta0 = meta.init()
    assert torch.equal(fresh(x), meta.learner.forward(theta0, x))
    rule = ALFA({n: model.get_parameter(n).shape for n in meta.learner.inner}, 2, form="paper").double()
    rule.load_state_dict(load_state_dict_file(files["rule"]))
    assert all(torch.equal(a, b) for a, b in zip(rule.state_dict().values(), meta.rule.state_dict().values()))
    manifest = json.loads((tmp_path / "out" / "export.json").read_text())
    assert manifest["init"]["keys"] == list(init) and manifest["rule"]["class"] == "ALFA"


def test_a_per_task_random_init_exports_only_its_rule(tmp_path):
    model = MLP(1, [8], 1)
    meta = MetaLearner(Learner(model, "mse"), RandomInit(model), CoordinateLSTM(hidden=4), steps=2)
    files = meta.export(tmp_path / "lstm")
    assert "init" not in files and "rule" in files
    with pytest.raises(ConfigError, match="no learned initialisation"):
        meta.initial_state_dict()
    assert "fresh random" in json.loads((tmp_path / "lstm" / "export.json").read_text())["init"]


def test_export_errors(tmp_path):
    meta, _ = trained_meta()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        meta.export(tmp_path / "file")
    with pytest.raises(UserError, match="no exported file"):
        load_state_dict_file(tmp_path / "nothing.pt")
