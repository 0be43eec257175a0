"""Proto-MAML's head (init.proto): ProtoNet's logits at step 0, float64 meta-gradients through the prototypes
(finite differences, a hand-written unroll, first order, vmap = loop), composition and configs."""

import pytest
import torch

from innerloop import config
from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit
from innerloop.inits.proto import ProtoHead, features, output_layer, prototypes
from innerloop.models import MLP, Conv4
from innerloop.oracles import AutogradOracle
from innerloop.rules import ALFA, SGD
from tests.gradcheck import class_batch, directional_checks, meta_grads as grads, meta_value, tanh_head_sgd_query_loss

WAYS = 3



def make(rule_kind="sgd", order="second", executor="loop", detach=False, proto=True, steps=2):
    torch.manual_seed(0)
    model = MLP(4, [6], WAYS, activation="tanh").double()
    learner = Learner(model, "cross_entropy")
    if rule_kind == "sgd":
        rule = SGD(0.3)
    else:
        rule = ALFA({n: p.shape for n, p in model.named_parameters()}, steps, lr=0.1, weight_decay=0.5,
                    form="robust", detach_grad_input=False)  # the exact derivative (finite differences)
        with torch.no_grad():
            for p in rule.parameters():
                p.add_(0.05 * torch.randn_like(p))
    head = ProtoHead(output_layer(model), detach) if proto else None
    return MetaLearner(learner, LearnedInit(model), rule, AutogradOracle(order), steps=steps, executor=executor,
                       proto_head=head).double()


def test_step_zero_logits_are_protonets_up_to_a_constant_per_example():
    meta = make()
    xs, ys, xq, _ = (t[0] for t in class_batch())
    theta0, static = meta.start()
    params = meta._task_init(meta.loop, dict(theta0), static, xs, ys)
    logits = meta.learner.forward(params, xq)
    phi_s, phi_q = features(meta.learner, params, xs, "net.2"), features(meta.learner, params, xq, "net.2")
    c = torch.stack([phi_s[ys == k].mean(0) for k in range(WAYS)])
    proto = -torch.cdist(phi_q, c).pow(2)  # ProtoNet's squared-Euclidean logits
    diff = logits - proto
    torch.testing.assert_close(diff, diff[:, :1].expand_as(diff))
    torch.testing.assert_close(diff[:, 0], phi_q.pow(2).sum(-1))  # the constant is ||phi(x)||^2
    assert torch.equal(logits.argmax(-1), proto.argmax(-1))


def test_prototypes_are_class_means_and_the_head_is_found():
    phi = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    torch.testing.assert_close(prototypes(phi, torch.tensor([0, 0, 1]), 3),
                               torch.tensor([[2.0, 1.0], [5.0, 5.0], [0.0, 0.0]]))
    assert output_layer(Conv4(1, 5, 8, 28)) == "classifier" and output_layer(MLP(2, [4], 3)) == "net.2"
    with pytest.raises(ConfigError, match="not an nn.Linear"):
        output_layer(MLP(2, [4], 3), "net.1")


@pytest.mark.parametrize("rule_kind", ["sgd", "alfa"])
def test_second_order_meta_gradient_matches_finite_differences(rule_kind):
    meta, batch = make(rule_kind), class_batch()
    g = grads(meta, batch)
    for analytic, numeric in directional_checks(list(meta.parameters()), lambda: meta_value(meta, batch), g):
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def hand_unroll(meta, batch, order, detach=False):
    """Proto-MAML + SGD written out: prototypes at theta_0, head 2c / -||c||^2, steps of SGD, query CE."""
    def phi(th, x):
        return torch.tanh(x @ th["net.0.weight"].T + th["net.0.bias"])

    total = 0.0
    for i in range(batch[0].shape[0]):
        xs, ys, xq, yq = (t[i] for t in batch)
        th = dict(meta.init())
        f = phi(th, xs)
        c = torch.stack([f[ys == k].mean(0) for k in range(WAYS)])
        c = c.detach() if detach else c
        th["net.2.weight"], th["net.2.bias"] = 2 * c, -(c ** 2).sum(1)
        total = total + tanh_head_sgd_query_loss(th, meta.rule.lr, meta.steps, order, xs, ys, xq, yq)
    params = list(meta.parameters())
    out = torch.autograd.grad(total / batch[0].shape[0], params, allow_unused=True)
    return [torch.zeros_like(p) if o is None else o for p, o in zip(params, out)]


@pytest.mark.parametrize("order", ["second", "first"])
@pytest.mark.parametrize("detach", [False, True])
def test_matches_a_hand_written_unroll_and_first_order_keeps_the_prototype_path(order, detach):
    meta, batch = make(order=order, detach=detach), class_batch()
    got = grads(meta, batch)
    for a, b in zip(got, hand_unroll(meta, batch, order, detach)):
        torch.testing.assert_close(a, b)
    if order == "first":  # the backbone's first layer learns through the prototypes (none without them)
        plain = grads(make(order="first", proto=False), batch)
        assert not torch.allclose(got[0], plain[0])


@pytest.mark.parametrize("rule_kind", ["sgd", "alfa"])
def test_vmap_and_loop_agree(rule_kind):
    batch = class_batch(n_tasks=3)
    for a, b in zip(grads(make(rule_kind, executor="loop"), batch), grads(make(rule_kind, executor="vmap"), batch)):
        torch.testing.assert_close(a, b)


def test_adapt_and_evaluation_use_the_prototype_head():
    meta = make(steps=1)
    xs, ys, xq, yq = (t[0] for t in class_batch())
    zero = meta.adapt(xs, ys, steps=0)
    theta0, static = meta.start()
    expected = meta._task_init(meta.loop, dict(theta0), static, xs, ys)
    torch.testing.assert_close(zero.predict(xq), meta.learner.forward(expected, xq))


def test_configs():
    assert config.load("omniglot/maml", ["init.proto=true"]).init.proto
    from innerloop.build import build_meta

    with pytest.raises(ConfigError, match="classification"):
        build_meta(config.load("sinusoid/maml", ["init.proto=true"]), {})
    meta = build_meta(config.load("omniglot/maml", ["init.proto=true", "model.filters=4"]),
                      {"image_shape": [1, 28, 28], "ways": 5})
    assert meta.proto_head.head == "classifier"
    with pytest.raises(ConfigError, match="checkpoint_unroll"):
        build_meta(config.load("omniglot/maml", ["init.proto=true", "model.filters=4", "train.checkpoint_unroll=1"]),
                   {"image_shape": [1, 28, 28], "ways": 5})
