"""Transferable ALFA (rule.kind = alfa_shared): one generator for every tensor, so any architecture."""

import math

import pytest
import torch
from torch import nn
from torch.func import vmap

from innerloop import config
from innerloop.errors import ConfigError
from innerloop.finetune import finetune, load_fine_tuner
from innerloop.models import MLP, Conv4
from innerloop.rules import SharedALFA
from innerloop.rules.alfa_shared import tensor_features
from innerloop.train import train


def params_grads(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = {k: v.detach().clone() for k, v in model.named_parameters()}
    return p, {k: torch.randn(v.shape, generator=g) for k, v in p.items()}


def test_starts_as_sgd_with_a_small_decay_on_any_architecture():
    rule = SharedALFA(lr=0.05, weight_decay=0.01)
    for model in (MLP(1, [8, 8], 1), Conv4(1, 5, 4, 28), MLP(784, [16], 3)):
        p, g = params_grads(model)
        new, _, info = rule(p, g, {}, 3)
        for k in p:
            torch.testing.assert_close(new[k], (1 - 0.05 * 0.01) * p[k] - 0.05 * g[k])
        assert info["lr"].shape == (len(p),)


def test_features_say_what_each_tensor_is():
    w, b, c = torch.ones(4, 3), torch.ones(4), torch.ones(8, 2, 3, 3)
    fw, fb, fc = (tensor_features(t, 2 * t, 9) for t in (w, b, c))
    assert fw[4] == pytest.approx(math.log10(3)) and fc[4] == pytest.approx(math.log10(18)) and fb[4] == 0
    assert fb[5:8].tolist() == [1, 0, 0] and fw[5:8].tolist() == [0, 1, 0] and fc[5:8].tolist() == [0, 0, 1]
    assert fw[8] == pytest.approx(1.0)  # log10(1 + 9)
    assert fw[0] == 1 and fw[2] == 2 and fw[1] == pytest.approx(0.0) and fw[3] == pytest.approx(math.log10(2))


def test_rates_stay_within_the_bound_and_decay_at_most_one():
    rule = SharedALFA(lr=0.1, weight_decay=5.0, bound=2.0)
    with torch.no_grad():
        rule.generator[-1].bias.copy_(torch.tensor([1e3, 1e3]))
    p, g = params_grads(MLP(1, [8], 1))
    _, _, info = rule(p, g, {}, 0)
    torch.testing.assert_close(info["lr"], torch.full((4,), 0.2))
    assert torch.all(info["wd"] == 1.0)  # 0.5 * 2 = 1, clipped there


def test_relative_outputs_share_the_rate_out_and_cannot_all_saturate():
    """``relative``: the generator's outputs are centred over the tensors before the bound, so a common shift of
    every output (the direction that drove the 4-CONV row to 1/B everywhere) changes nothing."""
    torch.manual_seed(0)
    rule = SharedALFA(lr=0.1, weight_decay=0.01, bound=2.0, relative=True)
    with torch.no_grad():
        rule.generator[-1].weight.normal_(0, 0.5)
    p, g = params_grads(Conv4(1, 5, 4, 28))
    _, _, a = rule(p, g, {}, 1)
    with torch.no_grad():
        rule.generator[-1].bias.sub_(1e3)  # would pin every multiplier at 1/2 without centring
    _, _, b = rule(p, g, {}, 1)
    torch.testing.assert_close(a["lr"], b["lr"])
    logs = torch.log(a["lr"] / 0.1)
    assert logs.std() > 0.05 and torch.all(logs.abs() <= math.log(2.0) + 1e-6)
    plain = SharedALFA(lr=0.1, weight_decay=0.01, bound=2.0)
    plain.load_state_dict(rule.state_dict())
    _, _, c = plain(p, g, {}, 1)
    torch.testing.assert_close(c["lr"], torch.full_like(c["lr"], 0.05))  # the saturated form: 1/B for every tensor
    one, _, info = rule({"w": p["classifier.weight"]}, {"w": g["classifier.weight"]}, {}, 0)
    assert info["lr"].item() == pytest.approx(0.1)  # one tensor: nothing to share out, the base rate


@pytest.mark.parametrize("relative", [False, True])
def test_runs_under_vmap_like_a_loop(relative):
    rule = SharedALFA(lr=0.1, relative=relative)
    with torch.no_grad():
        for q in rule.generator.parameters():
            q.add_(0.1 * torch.randn_like(q))
    model = Conv4(1, 5, 4, 28)
    p, g = params_grads(model)
    batch_p = {k: torch.stack([v, v + 0.1]) for k, v in p.items()}
    batch_g = {k: torch.stack([v, -v]) for k, v in g.items()}
    out, _, info = vmap(lambda a, b: rule(a, b, {}, 1))(batch_p, batch_g)
    for i in range(2):
        ref, _, ref_info = rule({k: v[i] for k, v in batch_p.items()}, {k: v[i] for k, v in batch_g.items()}, {}, 1)
        torch.testing.assert_close(info["lr"][i], ref_info["lr"])
        for k in ref:
            torch.testing.assert_close(out[k][i], ref[k])


def test_options_are_checked():
    with pytest.raises(ConfigError, match="rule.bound"):
        SharedALFA(bound=0.5)
    with pytest.raises(ConfigError, match="rule.weight_decay"):
        SharedALFA(weight_decay=0.0)


def test_serves_incongruous_sources_where_per_layer_alfa_cannot():
    sets = ['task.family="incongruous"', 'task.sources=["mnist", "cifar10"]', 'init.kind="random"']
    assert config.load("sinusoid/alfa-maml", sets + ['rule.kind="alfa_shared"']).rule.kind == "alfa_shared"
    with pytest.raises(ConfigError, match="alfa_shared"):
        config.load("sinusoid/alfa-maml", sets)


def test_a_trained_rule_fine_tunes_another_architecture(tmp_path):
    cfg = config.load("sinusoid/alfa-maml", ['rule.kind="alfa_shared"', "train.iterations=3", "train.meta_batch=2",
                                             "inner.steps=3", "eval.tasks=5", "model.hidden=[8]"])
    train(cfg, tmp_path / "run", progress=False)
    rule = load_fine_tuner(tmp_path / "run")
    assert isinstance(rule, SharedALFA) and not any(p.requires_grad for p in rule.parameters())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.linspace(-3, 3, 10).unsqueeze(1)
    report = finetune(model, x, torch.sin(x), rule, steps=20)
    assert report["losses"][-1] < report["losses"][0]


def test_a_new_base_rate_keeps_the_learned_multipliers():
    """``with_base_lr``: rates and decays scale by new / old base rate, everything the generator learned is kept."""
    torch.manual_seed(0)
    rule = SharedALFA(lr=0.4, weight_decay=0.01)
    with torch.no_grad():  # a "trained" rule: a generator that departs from 1 and a moved base rate
        rule.generator[-1].weight.normal_(0, 0.5)
        rule.log_lr.add_(0.3)
    moved = rule.with_base_lr(0.01)
    p, g = params_grads(MLP(1, [8, 8], 1))
    _, _, a = rule(p, g, {}, 2)
    _, _, b = moved(p, g, {}, 2)
    torch.testing.assert_close(b["lr"], a["lr"] * 0.01 / 0.4)
    torch.testing.assert_close(b["wd"], a["wd"] * 0.01 / 0.4)
    assert moved.lr == 0.01 and rule.lr == 0.4 and a["lr"].std() > 0  # the original is untouched
    with pytest.raises(ConfigError, match="> 0"):
        rule.with_base_lr(0.0)


def test_finetune_command_anchors_a_shared_rule_at_the_users_rate(tmp_path, capsys, monkeypatch):
    import json

    from innerloop.cli import main

    cfg = config.load("sinusoid/alfa-maml", ['rule.kind="alfa_shared"', "train.iterations=2", "train.meta_batch=2",
                                             "inner.steps=2", "eval.tasks=5", "model.hidden=[8]"])
    train(cfg, tmp_path / "run", progress=False)
    (tmp_path / "usermodel2.py").write_text(
        "import torch\nfrom torch import nn\n\ndef make():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    x = torch.linspace(-3, 3, 10).unsqueeze(1)
    torch.save({"x": x, "y": torch.sin(x)}, tmp_path / "data.pt")
    finals = {}
    for lr in ("0.001", "0.05"):
        capsys.readouterr()
        assert main(["finetune", str(tmp_path / "run"), "--model", "usermodel2:make", "--data", str(tmp_path / "data.pt"),
                     "--steps", "10", "--lr", lr, "--out", str(tmp_path / f"tuned{lr}.pt")]) == 0
        out = json.loads(capsys.readouterr().out)
        finals[lr] = out["final_loss"]
        assert out["final_loss"] < out["initial_loss"]
    assert finals["0.05"] < finals["0.001"]  # the rate reached the rule: a 50x larger base rate fits further
