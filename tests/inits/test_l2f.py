"""L2F attenuation: meta-gradients against finite differences and a hand-written unroll (float64)."""

import pytest
import torch
from torch.nn import functional as F

from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import Attenuator, LearnedInit
from innerloop.oracles import AutogradOracle
from innerloop.rules import SGD
from tests.gradcheck import directional_checks, tanh_mlp


def make_meta(model, steps, detach, order="second", executor="loop"):
    learner = Learner(model, "mse")
    torch.manual_seed(5)
    att = Attenuator(learner.inner, detach_embedding=detach).double()
    return MetaLearner(learner, LearnedInit(model).double(), SGD(0.3), AutogradOracle(order), steps=steps,
                       executor=executor, attenuator=att)


def flat_grad(meta, batch):
    meta.zero_grad(set_to_none=True)
    meta.meta_backward(batch)
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in meta.parameters()]


def hand_unroll(meta, batch, order, detach):
    """gamma from the layer-wise mean support gradient at theta_0, then SGD steps, torch.autograd only."""
    names = meta.learner.inner
    att = meta.attenuator.net

    total = 0.0
    for i in range(batch[0].shape[0]):
        xs, ys, xq, yq = (t[i] for t in batch)
        theta = dict(meta.init())
        g0 = torch.autograd.grad(F.mse_loss(tanh_mlp(theta, xs), ys), [theta[n] for n in names],
                                 create_graph=(order == "second" and not detach))
        e = torch.stack([g.mean() for g in g0])
        gamma = torch.sigmoid(att[2](torch.relu(att[0](e.detach() if detach else e))))
        theta = {n: theta[n] * gamma[l] for l, n in enumerate(names)}
        for _ in range(meta.steps):
            g = torch.autograd.grad(F.mse_loss(tanh_mlp(theta, xs), ys), [theta[n] for n in names], create_graph=(order == "second"))
            theta = {n: theta[n] - meta.rule.lr * gn for n, gn in zip(names, g)}
        total = total + F.mse_loss(tanh_mlp(theta, xq), yq)
    total = total / batch[0].shape[0]
    params = list(meta.parameters())
    gs = torch.autograd.grad(total, params, allow_unused=True)
    return [g if g is not None else torch.zeros_like(p) for g, p in zip(gs, params)]


def meta_loss(meta, batch):
    theta0, static = meta.start()
    w = meta.objective.step_weights(meta.steps, 0)
    losses = []
    for i in range(batch[0].shape[0]):
        xs, ys, xq, yq = (t[i] for t in batch)
        p = meta._task_init(meta.loop, dict(theta0), static, xs, ys)
        losses.append(meta.loop.meta_loss(p, None, static, xs, ys, xq, yq, w)[0])
    return torch.stack(losses).mean()


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("detach", [True, False])
def test_l2f_matches_finite_differences(steps, detach, small_mlp, sine_batch):
    meta = make_meta(small_mlp, steps, detach)
    grads = flat_grad(meta, sine_batch)
    assert any(float(g.abs().sum()) > 0 for g in grads[-4:])  # the attenuator is meta-learned
    if detach:  # the stop-gradient makes the exact derivative differ by design; check the rest via the unroll
        return
    for analytic, fd in directional_checks(list(meta.parameters()), lambda: meta_loss(meta, sine_batch), grads):
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("order", ["second", "first"])
@pytest.mark.parametrize("detach", [True, False])
def test_l2f_matches_hand_written_unroll(steps, order, detach, small_mlp, sine_batch):
    meta = make_meta(small_mlp, steps, detach, order)
    for a, b in zip(flat_grad(meta, sine_batch), hand_unroll(meta, sine_batch, order, detach)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_l2f_vmap_and_loop_agree(small_mlp, sine_batch):
    a = flat_grad(make_meta(small_mlp, 2, False, executor="loop"), sine_batch)
    b = flat_grad(make_meta(small_mlp, 2, False, executor="vmap"), sine_batch)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-13)


def test_l2f_attenuates_at_evaluation_and_refuses_checkpointing(small_mlp, sine_batch):
    meta = make_meta(small_mlp, 2, True)
    with_att, _ = meta.evaluate(sine_batch, steps=0)
    meta.attenuator = None
    without, _ = meta.evaluate(sine_batch, steps=0)
    assert not torch.allclose(with_att, without)
    learner = Learner(small_mlp, "mse")
    with pytest.raises(ConfigError, match="checkpoint_unroll"):
        MetaLearner(learner, LearnedInit(small_mlp), SGD(0.1), steps=2, checkpoint=1, attenuator=Attenuator(learner.inner))
