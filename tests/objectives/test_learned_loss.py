"""MeTAL's learned inner loss (objective.inner_loss = metal): exact start, float64 meta-gradients (finite
differences, a hand-written unroll, vmap = loop), composition with rules, configs and errors."""

import pytest
import torch
from torch.nn import functional as F

from innerloop import config
from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit
from innerloop.models import MLP
from innerloop.objectives.learned_loss import LearnedInnerLoss, normalise
from innerloop.oracles import AutogradOracle
from innerloop.rules import ALFA, SGD
from innerloop.train import train
from tests.gradcheck import class_batch, directional_checks

WAYS = 3



def make(rule_kind="sgd", init="random", transductive=True, steps=2, executor="loop", classification=True,
         order="second", loss=True):
    torch.manual_seed(0)
    out = WAYS if classification else 1
    model = MLP(4 if classification else 1, [6], out, activation="tanh").double()
    learner = Learner(model, "cross_entropy" if classification else "mse")
    if rule_kind == "sgd":
        rule = SGD(0.3)
    else:
        rule = ALFA({n: p.shape for n, p in model.named_parameters()}, steps, lr=0.1, weight_decay=0.5,
                    form="robust", detach_grad_input=False)  # the exact derivative (finite differences)
        with torch.no_grad():  # the generator's head away from zero, so the rule's meta-parameters matter too
            for p in rule.parameters():
                p.add_(0.05 * torch.randn_like(p))
    extra = LearnedInnerLoss(len(learner.inner), out, steps, classification, transductive, init) if loss else None
    if extra is not None:
        with torch.no_grad():  # gates and heads away from zero, so every path carries gradient
            for p in extra.parameters():
                p.add_(0.1 * torch.randn_like(p))
    meta = MetaLearner(learner, LearnedInit(model), rule, AutogradOracle(order), steps=steps, executor=executor,
                       inner_loss=extra)
    return meta.double()


def meta_value(meta, batch):
    theta0, static = meta.start()
    w = meta.objective.step_weights(meta.steps, 0)
    return torch.stack([meta.loop.meta_loss(dict(theta0), None, static, *(t[i] for t in batch), w)[0]
                        for i in range(batch[0].shape[0])]).mean()


def grads(meta, batch):
    meta.zero_grad(set_to_none=True)
    meta.meta_backward(batch)
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in meta.parameters()]


def test_zero_init_starts_from_the_task_loss_exactly_and_still_learns():
    """``metal_init = zero``: the first meta-loss equals the plain inner loop's; the loss heads get gradient."""
    batch = class_batch()
    plain, metal = make(loss=False), make(init="zero")
    with torch.no_grad():  # undo make()'s perturbation of the heads and gates: the state a fresh build has
        for m in [*metal.inner_loss.support, *metal.inner_loss.query]:
            for t in (m.w2, m.b2, m.gate_scale, m.gate_shift):
                t.zero_()
    torch.testing.assert_close(meta_value(metal, batch), meta_value(plain, batch))
    grads(metal, batch)
    heads = [m.w2.grad for m in [*metal.inner_loss.support, *metal.inner_loss.query]]
    assert all(h is not None and h.abs().sum() > 0 for h in heads[:1]) and any(h.abs().sum() > 0 for h in heads)


@pytest.mark.parametrize("rule_kind", ["sgd", "alfa"])
@pytest.mark.parametrize("classification", [True, False])
def test_second_order_meta_gradient_matches_finite_differences(rule_kind, classification):
    meta = make(rule_kind, classification=classification)
    batch = class_batch() if classification else _sine()
    g = grads(meta, batch)
    params = list(meta.parameters())
    for analytic, numeric in directional_checks(params, lambda: meta_value(meta, batch), g):
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    own = [p.grad for p in meta.inner_loss.parameters()]
    assert all(x is not None for x in own) and sum(float(x.abs().sum()) for x in own) > 0


def _sine():
    from innerloop.tasks import SinusoidTasks

    return SinusoidTasks(shots=5, query=6).train_batch(2, seed=1, iteration=0, dtype=torch.float64)


def hand_metal(extra, step, theta, xs, ys, xq):
    """MeTAL's inner loss written out from the equations (classification, tanh MLP 4-6-3)."""
    def net(th, x):
        return torch.tanh(x @ th["net.0.weight"].T + th["net.0.bias"]) @ th["net.2.weight"].T + th["net.2.bias"]

    out_s, out_q = net(theta, xs), net(theta, xq)
    ce = F.cross_entropy(out_s, ys)
    means = torch.stack([theta[n].mean() for n in theta])
    s = torch.cat([ce.reshape(1), means])

    def adapted(m, state, a_in):
        h = torch.relu(a_in @ m.adapter[0].weight.T + m.adapter[0].bias) @ m.adapter[2].weight.T + m.adapter[2].bias
        mult, off = h[:4], h[4:]
        w = [(1 + m.gate_scale[k] * mult[k]) * t + m.gate_shift[k] * off[k] for k, t in enumerate((m.w1, m.b1, m.w2, m.b2))]
        return (torch.relu(state @ w[0].T + w[1]) @ w[2].T + w[3]).mean()

    def z(v):
        return (v - v.mean()) / (v.std() + 1e-12)

    tau_s = z(torch.cat([s.repeat(len(xs), 1), out_s, F.one_hot(ys, WAYS).double()], 1))
    logp = F.log_softmax(out_q, -1)
    tau_q = z(torch.cat([means.repeat(len(xq), 1), out_q, (logp.exp() * logp).sum(1, keepdim=True)], 1))
    return ce + adapted(extra.support[step], tau_s, z(s)) + adapted(extra.query[step], tau_q, tau_q.mean(0))


@pytest.mark.parametrize("order", ["second", "first"])
def test_matches_a_hand_written_unroll(order):
    meta = make(order=order)
    batch = class_batch()
    names = meta.learner.inner
    total = 0.0
    for i in range(batch[0].shape[0]):
        xs, ys, xq, yq = (t[i] for t in batch)
        theta = dict(meta.init())
        for j in range(meta.steps):
            loss = hand_metal(meta.inner_loss, j, theta, xs, ys, xq)
            g = torch.autograd.grad(loss, [theta[n] for n in names], create_graph=order == "second")
            theta = {n: theta[n] - meta.rule.lr * gi for n, gi in zip(names, g)}
        total = total + F.cross_entropy(torch.tanh(xq @ theta["net.0.weight"].T + theta["net.0.bias"])
                                        @ theta["net.2.weight"].T + theta["net.2.bias"], yq)
    params = list(meta.parameters())
    expected = torch.autograd.grad(total / batch[0].shape[0], params, allow_unused=True)
    for got, want in zip(grads(meta, batch), expected):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want)


@pytest.mark.parametrize("rule_kind", ["sgd", "alfa"])
def test_vmap_and_loop_agree(rule_kind):
    batch = class_batch(n_tasks=3)
    loop, vm = make(rule_kind, executor="loop"), make(rule_kind, executor="vmap")
    for a, b in zip(grads(loop, batch), grads(vm, batch)):
        torch.testing.assert_close(a, b)


def test_query_term_reads_the_query_inputs_only_when_transductive():
    batch = class_batch()
    with_q, without = make(transductive=True), make(transductive=False)
    xs, ys, xq, yq = batch
    moved = (xs, ys, xq + 1.0, yq)  # other query inputs, same labels
    assert without.inner_loss.query is None
    # the inner loop without the query term ignores the query inputs (apart from the meta-loss on them)
    a = without.adapt(xs[0], ys[0], query_x=xq[0]).predict(xq[0])
    b = without.adapt(xs[0], ys[0], query_x=moved[2][0]).predict(xq[0])
    torch.testing.assert_close(a, b)
    c = with_q.adapt(xs[0], ys[0], query_x=xq[0]).predict(xq[0])
    d = with_q.adapt(xs[0], ys[0], query_x=moved[2][0]).predict(xq[0])
    assert not torch.allclose(c, d)


def test_steps_past_the_trained_ones_reuse_the_last_network():
    extra = LearnedInnerLoss(2, 3, steps=2, init="random")
    args = (torch.tensor(1.0), {"a": torch.randn(4), "b": torch.randn(3)}, torch.randn(6, 3), torch.arange(3).repeat(2),
            torch.randn(5, 3))
    assert torch.equal(extra(1, *args), extra(7, *args)) and not torch.equal(extra(0, *args), extra(1, *args))


def test_normalise_is_over_every_entry():
    v = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    torch.testing.assert_close(normalise(v), (v - 3.0) / (v.std() + 1e-12))


def test_config_trains_and_evaluates_and_refuses_first_order(tmp_path):
    cfg = config.load("sinusoid/maml", ['objective.inner_loss="metal"', "train.iterations=2", "train.meta_batch=2",
                                        "inner.steps=2", "eval.tasks=4", "model.hidden=[8]"])
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["iterations"] == 2
    from innerloop.loading import load

    meta = load(tmp_path / "run")
    assert isinstance(meta.inner_loss, LearnedInnerLoss) and not meta.inner_loss.classification
    with pytest.raises(ConfigError, match="inner.order = 'second'"):
        config.load("sinusoid/maml", ['objective.inner_loss="metal"', 'inner.order="first"'])
    from innerloop.build import build_meta

    mixed = config.load("sinusoid/alfa-maml", ['objective.inner_loss="metal"', 'task.family="incongruous"',
                                               'task.sources=["mnist", "cifar10"]', 'init.kind="random"',
                                               'rule.kind="alfa_shared"'])
    spec = {"sources": {"mnist": {"image_shape": [1, 28, 28], "ways": 5},
                        "cifar10": {"image_shape": [3, 32, 32], "ways": 5}}}
    with pytest.raises(ConfigError, match="one architecture"):
        build_meta(mixed, spec)
