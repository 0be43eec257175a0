"""Meta-parameters keep the model's ``named_parameters()`` order (PyTorch sorts a ``ParameterDict`` built from a
plain dict: ``bias`` before ``weight``, ``10`` before ``2``); checkpoints written in the old sorted order resume on
the identical trajectory (their optimizer state is rearranged by name)."""

from __future__ import annotations

import json

import torch

from innerloop import config as C
from innerloop.inits import LearnedInit
from innerloop.models import Conv4
from innerloop.params import legacy_parameter_order
from innerloop.rules import PerStepLayerLR
from innerloop.train import train


def test_learned_init_and_rates_follow_the_model():
    model = Conv4(1, 5, filters=4, image_size=28)
    order = [n.replace(".", "__") for n, _ in model.named_parameters()]
    assert [n.split(".", 1)[1] for n, _ in LearnedInit(model).named_parameters()] == order
    rates = PerStepLayerLR([n for n, _ in model.named_parameters()], 2)
    assert [n.split(".", 1)[1] for n, _ in rates.named_parameters()] == order
    legacy = legacy_parameter_order(LearnedInit(model))
    assert legacy == sorted(legacy) and legacy != [n for n, _ in LearnedInit(model).named_parameters()]


def test_a_checkpoint_in_the_old_order_resumes_exactly(tmp_path):
    sets = ['train.dtype="float64"', "train.checkpoint_every=2", "train.log_every=2", "eval.tasks=2"]
    train(C.load("sinusoid/alfa-maml", sets + ["train.iterations=4"]), tmp_path / "ref", progress=False)
    train(C.load("sinusoid/alfa-maml", sets + ["train.iterations=2"]), tmp_path / "old", progress=False)
    path = tmp_path / "old" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    names = state.pop("param_names")
    from innerloop.build import build

    _, meta = build(C.load("sinusoid/alfa-maml", sets))
    legacy = [n for n in legacy_parameter_order(meta) if n in set(names)]
    assert legacy != names  # the old order really differs
    position = {n: i for i, n in enumerate(names)}
    state["optimizer"]["state"] = {i: state["optimizer"]["state"][position[n]] for i, n in enumerate(legacy)}
    torch.save(state, path)  # as innerloop < 0.13 wrote it
    train(C.load("sinusoid/alfa-maml", sets + ["train.iterations=4"]), tmp_path / "old", resume=True, progress=False)
    a = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    for k, v in a["meta"].items():
        assert torch.equal(v, b["meta"][k]), k
    ma = [json.loads(l) for l in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (tmp_path / "old" / "metrics.jsonl").read_text().splitlines()]
    assert [m["meta_loss"] for m in ma if "meta_loss" in m] == [m["meta_loss"] for m in mb if "meta_loss" in m]
