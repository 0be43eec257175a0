"""UAP optimizee: only delta is adapted, C&W margin, and a zeroth-order run never backpropagates into the victim."""

import pytest
import torch
from torch import nn

from innerloop.engine import Learner, MetaLearner
from innerloop.engine.learner import cw_margin
from innerloop.inits import RandomInit
from innerloop.models import LeNet5, Perturbation
from innerloop.oracles import AutogradOracle, ZerothOrderOracle
from innerloop.rules import CoordinateLSTM
from tests.blackbox import ForwardOnly


def uap_meta(victim, oracle):
    model = Perturbation(victim, (1, 28, 28))
    learner = Learner(model, "cw", penalty=lambda p: 0.05 * p["delta"].pow(2).sum(),
                      extra_metrics={"l2": lambda p: p["delta"].norm()})
    return MetaLearner(learner, RandomInit(model, "normal", 1e-4), CoordinateLSTM(), oracle, steps=3, executor="loop")


def batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n, 4), generator=g)
    return x, y, x.clone(), y.clone()


def test_only_delta_is_adapted_and_inputs_are_clamped():
    torch.manual_seed(0)
    victim = LeNet5(1, 10, 28)
    model = Perturbation(victim, (1, 28, 28))
    assert [n for n, _ in model.named_parameters()] == ["delta"]
    assert Learner(model, "cw").inner == ["delta"] and Learner(model, "cw").num_inner == 784
    with torch.no_grad():
        model.delta.fill_(5.0)  # x + delta is clamped to 1 everywhere
        x = torch.rand(3, 1, 28, 28)
        torch.testing.assert_close(model(x), victim(torch.ones_like(x)))


def test_cw_margin_is_zero_exactly_when_the_attack_succeeds():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 0])
    logp = logits.log_softmax(-1)
    expect = torch.stack([logp[0, 0] - logp[0, 1], torch.tensor(0.0)]).mean()  # task 2: class 1 beats the true class 0
    torch.testing.assert_close(cw_margin(logits, y), expect)
    learner = Learner(nn.Identity(), "cw")
    assert learner.metric_name == "asr"
    # with a confidence margin kappa the loss keeps pushing until the wrong class leads by kappa nats
    margin = logp[1, 0] - logp[1, 1]  # -1: already a success
    expect = torch.stack([logp[0, 0] - logp[0, 1], margin]).mean()
    torch.testing.assert_close(Learner(nn.Identity(), "cw", kappa=2.0).loss({}, logits, y), expect)
    expect = torch.stack([logp[0, 0] - logp[0, 1], torch.tensor(-0.5)]).mean()
    torch.testing.assert_close(Learner(nn.Identity(), "cw", kappa=0.5).loss({}, logits, y), expect)


def test_zeroth_order_fine_tuning_never_calls_backward_on_the_victim():
    torch.manual_seed(0)
    victim = ForwardOnly(LeNet5(1, 10, 28))
    with pytest.raises(Exception, match="black-box victim"):  # the guard works: gradients do reach it
        uap_meta(victim, AutogradOracle("first")).evaluate(batch(), steps=2)
    values, info = uap_meta(victim, ZerothOrderOracle(q=4, mu=0.005)).evaluate(batch(), steps=3, record=[0, 3])
    assert values.shape == (2, 2) and info["metric/l2"].shape == (2, 2)
    assert (info["metric/l2"][:, 1] > info["metric/l2"][:, 0]).all()  # delta moved, from loss values alone
