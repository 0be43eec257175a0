"""Variable-way tasks (Meta-Dataset): a task of w < C classes scores only its w logits. Float64 meta-gradients of
ragged batches (finite differences; a hand-written unroll over the sliced logits; vmap = loop), with and without
Proto-MAML's head, SGD and ALFA."""

import pytest
import torch
from torch.nn import functional as F

from innerloop.engine import Learner, MetaLearner
from innerloop.engine.learner import mask_absent_classes
from innerloop.inits import LearnedInit
from innerloop.inits.proto import ProtoHead, output_layer
from innerloop.models import MLP
from innerloop.oracles import AutogradOracle
from innerloop.rules import ALFA, SGD
from tests.gradcheck import class_batch, directional_checks, meta_grads as grads, meta_value, tanh_head_sgd_query_loss

OUTPUTS = 5  # the model's outputs (max ways)


def ragged(ways=(2, 3, 4)):
    """Tasks of different ways (and so sizes), labels 0..w-1: a list of per-task tuples."""
    return [tuple(t[0] for t in class_batch(n_tasks=1, ways=w, seed=w)) for w in ways]


def make(rule_kind="sgd", order="second", proto=False, executor="loop", variable=True, steps=2):
    torch.manual_seed(0)
    model = MLP(4, [6], OUTPUTS, activation="tanh").double()
    learner = Learner(model, "cross_entropy", variable_ways=variable)
    if rule_kind == "sgd":
        rule = SGD(0.3)
    else:
        rule = ALFA({n: p.shape for n, p in model.named_parameters()}, steps, lr=0.1, weight_decay=0.5,
                    form="robust", detach_grad_input=False)
        with torch.no_grad():
            for p in rule.parameters():
                p.add_(0.05 * torch.randn_like(p))
    head = ProtoHead(output_layer(model)) if proto else None
    return MetaLearner(learner, LearnedInit(model), rule, AutogradOracle(order), steps=steps, executor=executor,
                       proto_head=head).double()


def test_masked_loss_and_accuracy_are_those_of_the_sliced_logits():
    out = torch.randn(6, OUTPUTS, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    out[0, 4] = 100.0  # an absent class with the largest logit: ignored
    masked = mask_absent_classes(out, y)
    assert torch.isinf(masked[:, 3:]).all() and torch.equal(masked[:, :3], out[:, :3])
    learner = Learner(MLP(4, [6], OUTPUTS).double(), "cross_entropy", variable_ways=True)
    torch.testing.assert_close(learner.loss_of(out, y, {}), F.cross_entropy(out[:, :3], y))
    assert float(learner.score(out, y)) == float((out[:, :3].argmax(-1) == y).double().mean())
    vmapped = torch.vmap(lambda o, t: learner.loss_of(o, t, {}))(out.view(2, 3, OUTPUTS), torch.tensor([[0, 1, 1],
                                                                                                      [0, 1, 2]]))
    torch.testing.assert_close(vmapped, torch.stack([F.cross_entropy(out[:3, :2], torch.tensor([0, 1, 1])),
                                                     F.cross_entropy(out[3:, :3], torch.tensor([0, 1, 2]))]))


@pytest.mark.parametrize("rule_kind", ["sgd", "alfa"])
@pytest.mark.parametrize("proto", [False, True])
def test_second_order_meta_gradient_of_a_ragged_batch_matches_finite_differences(rule_kind, proto):
    meta, batch = make(rule_kind, proto=proto), ragged()
    g = grads(meta, batch)
    for analytic, numeric in directional_checks(list(meta.parameters()), lambda: meta_value(meta, batch), g):
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def hand_unroll(meta, batch, order, proto):
    """SGD over the first w logits of each task, written out (Proto-MAML: head rows 0..w-1 from the prototypes)."""
    def phi(th, x):
        return torch.tanh(x @ th["net.0.weight"].T + th["net.0.bias"])

    total = 0.0
    for xs, ys, xq, yq in batch:
        w = int(ys.max()) + 1
        th = dict(meta.init())
        if proto:
            f = phi(th, xs)
            c = torch.stack([f[ys == k].mean(0) for k in range(w)])
            th["net.2.weight"], th["net.2.bias"] = 2 * c, -(c ** 2).sum(1)
        else:
            th["net.2.weight"], th["net.2.bias"] = th["net.2.weight"][:w], th["net.2.bias"][:w]
        total = total + tanh_head_sgd_query_loss(th, meta.rule.lr, meta.steps, order, xs, ys, xq, yq)
    params = list(meta.parameters())
    out = torch.autograd.grad(total / len(batch), params, allow_unused=True)
    return [torch.zeros_like(p) if o is None else o for p, o in zip(params, out)]


@pytest.mark.parametrize("order", ["second", "first"])
@pytest.mark.parametrize("proto", [False, True])
def test_matches_a_hand_written_unroll_over_the_sliced_logits(order, proto):
    meta, batch = make(order=order, proto=proto), ragged()
    for a, b in zip(grads(meta, batch), hand_unroll(meta, batch, order, proto)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("rule_kind", ["sgd", "alfa"])
def test_vmap_and_loop_agree_on_padded_tasks(rule_kind):
    batch = class_batch(n_tasks=3, ways=3)  # 3 of 5 classes in every task: stacked, so vmappable
    loop = grads(make(rule_kind, proto=True, executor="loop"), batch)
    for a, b in zip(loop, grads(make(rule_kind, proto=True, executor="vmap"), batch)):
        torch.testing.assert_close(a, b)
    unmasked = grads(make(rule_kind, proto=True, variable=False), batch)
    assert not all(torch.allclose(a, b) for a, b in zip(loop, unmasked))  # the mask changes the objective


def test_evaluation_predictions_are_among_the_tasks_own_classes():
    meta = make(proto=False)
    with torch.no_grad():
        meta.init()["net.2.bias"][3:] = 50.0  # absent classes would win the argmax
    _, info = meta.evaluate(class_batch(n_tasks=2, ways=3), steps=1, outputs=True)
    for pred, labels in zip(info["predictions"], info["labels"]):
        assert int(pred.max()) <= int(labels.max())


def test_evaluation_outputs_of_unequal_episodes_come_back_per_task():
    meta = make(proto=False)
    tasks = ragged((2, 3, 4))
    values, info = meta.evaluate(tasks, steps=1, outputs=True)
    assert values.shape == (3,)
    assert [tuple(o.shape) for o in info["outputs"]] == [(t[2].shape[0], OUTPUTS) for t in tasks]
    for pred, (_, _, _, yq) in zip(info["predictions"], tasks):
        assert pred.shape == yq.shape and int(pred.max()) <= int(yq.max())
    # equal episodes still stack
    _, same = meta.evaluate(ragged((3, 3)), steps=1, outputs=True)
    assert torch.is_tensor(same["outputs"]) and same["outputs"].shape[0] == 2
