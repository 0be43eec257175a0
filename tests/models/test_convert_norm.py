"""Bring your own model and loss: a model with native BatchNorm and a custom loss meta-trains in the loop, and after
``convert_norm`` under vmap, with equal float64 meta-gradients (and equal to a hand-written unroll)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit
from innerloop.models import BatchNorm, convert_norm
from innerloop.rules import SGD


class Net(nn.Module):
    """A user's conv net, written with PyTorch's own layers."""

    def __init__(self, running: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, track_running_stats=running)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3), nn.BatchNorm1d(3, track_running_stats=running))

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))))


def smooth_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A user's loss: label-smoothed cross-entropy from elementary ops (vmap-safe: no one_hot)."""
    logp = out.log_softmax(-1)
    return -(0.9 * logp.gather(-1, y.unsqueeze(-1)).squeeze(-1) + 0.1 * logp.mean(-1)).mean()


def batch(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 6, 1, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n, 6), generator=g),
            torch.randn(n, 9, 1, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n, 9), generator=g))


def meta_grads(model: nn.Module, executor: str, b) -> dict[str, torch.Tensor]:
    meta = MetaLearner(Learner(model, smooth_ce), LearnedInit(model).double(), SGD(0.4).double(), steps=2,
                       executor=executor, workers=1)
    meta.meta_backward(b)
    return {n: p.grad.clone() for n, p in meta.named_parameters() if p.grad is not None}


def hand_unroll(model: nn.Module, b) -> dict[str, torch.Tensor]:
    """MAML written out with torch.autograd on the user's own module: the reference."""
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    inner = [n for n in params if not n.startswith(("bn.", "head.2."))]
    total = 0
    for xs, ys, xq, yq in zip(*b):
        theta = dict(params)
        for _ in range(2):
            loss = smooth_ce(functional_call(model, theta, (xs,)), ys)
            grads = torch.autograd.grad(loss, [theta[n] for n in inner], create_graph=True)
            theta = {**theta, **{n: theta[n] - 0.4 * g for n, g in zip(inner, grads)}}
        total = total + smooth_ce(functional_call(model, theta, (xq,)), yq)
    grads = torch.autograd.grad(total / b[0].shape[0], list(params.values()))
    return dict(zip(params, grads))


def test_native_batch_norm_in_the_loop_and_converted_under_vmap_agree():
    torch.manual_seed(0)
    native = Net().double()
    b = batch()
    loop = meta_grads(native, "loop", b)
    with pytest.raises(ConfigError, match="convert_norm"):
        meta_grads(native, "vmap", b)
    converted = convert_norm(Net().double())
    converted.load_state_dict(native.state_dict())
    assert sum(isinstance(m, BatchNorm) for m in converted.modules()) == 2
    assert [n for n, _ in converted.named_parameters()] == [n for n, _ in native.named_parameters()]
    vmapped = meta_grads(converted, "vmap", b)
    assert loop.keys() == vmapped.keys() and len(loop) == 8
    for k in loop:
        torch.testing.assert_close(vmapped[k], loop[k], rtol=1e-9, atol=1e-12)
    reference = hand_unroll(native, b)
    for name, g in reference.items():
        mangled = "inits.default.values." + name.replace(".", "__")
        torch.testing.assert_close(loop[mangled], g, rtol=1e-9, atol=1e-12)


def test_convert_norm_keeps_weights_drops_running_statistics_and_is_exact_on_batches():
    torch.manual_seed(1)
    native = Net(running=True).double()
    with torch.no_grad():
        native.bn.weight.uniform_(0.5, 2)
        native.bn.bias.uniform_(-1, 1)
    with pytest.raises(ConfigError, match="convert_norm"):
        Learner(native, "cross_entropy")
    x = torch.randn(8, 1, 6, 6, dtype=torch.float64)
    want = native.train()(x)  # batch statistics
    converted = convert_norm(native)
    assert converted is native and not any(isinstance(m, nn.BatchNorm2d) for m in native.modules())
    torch.testing.assert_close(converted(x), want)
    Learner(converted, "cross_entropy")  # accepted now
