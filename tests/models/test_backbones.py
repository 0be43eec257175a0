"""Backbones: output shapes, the inner-loop tensor counts ALFA's generator is sized by, vmap = loop."""

import pytest
import torch

from innerloop.engine import Learner, MetaLearner
from innerloop.inits import LearnedInit
from innerloop.models import Conv4, LeNet5, ResNet12
from innerloop.oracles import AutogradOracle
from innerloop.rules import ALFA
from tests.engine.test_normalisation import episode_batch


def test_alfa_sizes_four_conv_and_resnet12():
    """Spec 3.3: N = 10 inner tensors for 4-CONV, 18 for ResNet12 (norm affine parameters excluded)."""
    conv = Conv4(3, 5, filters=48, image_size=84, activation="leaky_relu")
    assert len(Learner(conv, "cross_entropy").inner) == 10
    assert conv.classifier.in_features == 48 * 5 * 5  # 84 -> 42 -> 21 -> 10 -> 5
    res = ResNet12(3, 5)
    assert len(Learner(res, "cross_entropy").inner) == 18
    assert not any(m.bias is not None for m in res.modules() if isinstance(m, torch.nn.Conv2d))
    assert res(torch.randn(2, 3, 84, 84)).shape == (2, 5)


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_lenet5_on_mnist_and_cifar_shapes(channels, size):
    assert LeNet5(channels, 10, size)(torch.randn(4, channels, size, size)).shape == (4, 10)


@pytest.mark.parametrize("make", [
    lambda: ResNet12(1, 3, channels=(2, 3, 3, 4)),
    lambda: LeNet5(1, 3, 28),
])
def test_vmap_and_loop_meta_gradients_agree(make):
    torch.manual_seed(0)
    model = make().double()
    batch = episode_batch(tasks=2, size=28 if isinstance(model, LeNet5) else 16)
    grads = []
    for executor in ("loop", "vmap"):
        torch.manual_seed(1)
        learner = Learner(model, "cross_entropy")
        rule = ALFA({n: model.get_parameter(n).shape for n in learner.inner}, 2, lr=0.1, form="paper").double()
        meta = MetaLearner(learner, LearnedInit(model).double(), rule, AutogradOracle("second"), steps=2, executor=executor)
        meta.meta_backward(batch)
        grads.append([p.grad.clone() for p in meta.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
