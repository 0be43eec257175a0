"""vmap and loop paths agree (float64, second order) for every normalisation layer the engine supports."""

import pytest
import torch
from torch import nn

from innerloop.engine import Learner, MetaLearner, choose_mode
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit
from innerloop.models import BatchNorm, Conv4
from innerloop.oracles import AutogradOracle
from innerloop.rules import ALFA, SGD


def episode_batch(tasks=3, ways=3, shots=2, queries=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(tasks, ways * shots, 1, size, size, generator=g, dtype=torch.float64)
    xq = torch.randn(tasks, ways * queries, 1, size, size, generator=g, dtype=torch.float64)
    ys = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).clone()
    yq = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).clone()
    return xs, ys, xq, yq


def grads(model, rule_kind, executor, steps, batch, adapt_norm=False):
    torch.manual_seed(1)
    learner = Learner(model, "cross_entropy", adapt_norm=adapt_norm)
    if rule_kind == "alfa":
        rule = ALFA({n: model.get_parameter(n).shape for n in learner.inner}, steps, lr=0.1, form="paper").double()
    else:
        rule = SGD(0.1)
    meta = MetaLearner(learner, LearnedInit(model).double(), rule, AutogradOracle("second"), steps=steps, executor=executor)
    meta.zero_grad()
    meta.meta_backward(batch)
    return [p.grad.clone() for p in meta.parameters() if p.grad is not None]


@pytest.mark.parametrize("rule_kind", ["sgd", "alfa"])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("adapt_norm", [False, True])
def test_elementary_batch_norm_is_exact_under_vmap(rule_kind, steps, adapt_norm):
    """With adapt_norm the affine parameters are per-task under vmap: the case where PyTorch's fused
    batch norm returns a wrong second-order meta-gradient (0.5-0.7% off here); ours must be exact."""
    torch.manual_seed(0)
    model = Conv4(1, 3, filters=4, image_size=16).double()
    batch = episode_batch()
    a = grads(model, rule_kind, "loop", steps, batch, adapt_norm)
    b = grads(model, rule_kind, "vmap", steps, batch, adapt_norm)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_batch_norm_affine_is_meta_learned_not_adapted():
    model = Conv4(1, 3, filters=4, image_size=16)
    learner = Learner(model, "cross_entropy")
    assert not any("norm" in n for n in learner.inner)
    assert {n for n in learner.outer} == {f"blocks.{i}.norm.{p}" for i in range(4) for p in ("weight", "bias")}
    meta = MetaLearner(learner, LearnedInit(model), SGD(0.1), steps=1, executor="loop")
    meta.meta_backward(tuple(t.float() if t.is_floating_point() else t for t in episode_batch(2)))
    norm_grads = [p.grad for n, p in meta.init.named_parameters() if "norm" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in norm_grads)


def test_elementary_batch_norm_matches_torch_forward():
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64)
    ours, ref = BatchNorm(4).double(), nn.BatchNorm2d(4, track_running_stats=False).double()
    with torch.no_grad():
        ours.weight.uniform_(), ours.bias.uniform_()
        ref.weight.copy_(ours.weight), ref.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x), ref(x))


def test_builtin_norms_are_routed_to_the_loop():
    model = Conv4(1, 3, filters=4, image_size=16, norm="torch")
    learner = Learner(model, "cross_entropy")
    assert choose_mode(learner, "cpu") == "loop"
    assert choose_mode(learner, "cuda") == "loop"
    with pytest.raises(ConfigError, match="functorch#534"):
        choose_mode(learner, "cpu", "vmap")


def test_builtin_batch_norm_loop_matches_elementary_vmap():
    """The loop path with nn.BatchNorm2d gives the same meta-gradient as our BatchNorm under vmap."""
    torch.manual_seed(0)
    ours = Conv4(1, 3, filters=4, image_size=16).double()
    torch.manual_seed(0)
    builtin = Conv4(1, 3, filters=4, image_size=16, norm="torch").double()
    batch = episode_batch()
    for x, y in zip(grads(ours, "sgd", "vmap", 3, batch), grads(builtin, "sgd", "loop", 3, batch)):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_running_statistics_are_refused():
    with pytest.raises(ConfigError, match="track_running_stats=False"):
        Learner(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), "mse")


def test_auto_mode_per_workload():
    from innerloop.models import MLP

    assert choose_mode(Learner(MLP(1, [4], 1), "mse"), "cpu") == "vmap"
    assert choose_mode(Learner(Conv4(1, 3, 4, 16), "cross_entropy"), "cpu") == "loop"
    assert choose_mode(Learner(Conv4(1, 3, 4, 16), "cross_entropy"), "cuda") == "vmap"


def _set_fused(model, fused):
    for m in model.modules():
        if isinstance(m, BatchNorm):
            m.fused = fused
    return model


@pytest.mark.parametrize("adapt_norm", [False, True])
def test_loop_path_runs_the_fused_kernel_with_the_composite_meta_gradient(monkeypatch, adapt_norm):
    """Outside torch.func transforms our BatchNorm calls PyTorch's fused kernel (exact there, and faster);
    the meta-gradient equals the elementary form's to 1e-9, and under vmap the fused kernel is never used."""
    from torch.nn import functional as F

    calls = []
    real = F.batch_norm
    monkeypatch.setattr(F, "batch_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    model = Conv4(1, 3, filters=4, image_size=16).double()
    batch = episode_batch()
    fused = grads(_set_fused(model, True), "sgd", "loop", 2, batch, adapt_norm)
    assert calls, "the loop path should use the fused kernel"
    calls.clear()
    composite = grads(_set_fused(model, False), "sgd", "loop", 2, batch, adapt_norm)
    assert not calls
    vmapped = grads(_set_fused(model, True), "sgd", "vmap", 2, batch, adapt_norm)
    assert not calls, "vmap must never reach the fused kernel (functorch#534)"
    for x, y, z in zip(fused, composite, vmapped):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(x, z, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("executor", ["loop", "vmap"])
def test_conv_meta_gradient_matches_finite_differences(executor):
    """Second order through conv + batch norm + ReLU + max-pool, two inner steps, both executors."""
    from tests.gradcheck import directional_checks

    torch.manual_seed(0)
    model = Conv4(1, 3, filters=3, image_size=16).double()
    batch = episode_batch(tasks=2)
    learner = Learner(model, "cross_entropy")
    meta = MetaLearner(learner, LearnedInit(model).double(), SGD(0.3), AutogradOracle("second"), steps=2,
                       executor=executor)
    meta.zero_grad()
    meta.meta_backward(batch)
    g = [p.grad.clone() for p in meta.parameters()]

    def loss():
        theta0, static = meta.start()
        return torch.stack([meta.loop.meta_loss(dict(theta0), None, static, *(t[i] for t in batch), meta.objective.step_weights(2, 0))[0]
                            for i in range(2)]).mean()

    for analytic, fd in directional_checks(list(meta.parameters()), loss, g):
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)
