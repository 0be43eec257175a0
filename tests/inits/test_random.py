"""Per-task random initialisations: the schemes' scales."""
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from innerloop.inits.random import RandomInit


def _deep_relu(width: int = 256, depth: int = 4) -> nn.Module:
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def test_kaiming_weights_have_variance_two_over_fan_in_and_zero_biases():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3), nn.ReLU(), nn.Linear(512, 10))
    p = RandomInit(model, scheme="kaiming").sample(8)
    assert p["0.weight"].var().item() == pytest.approx(2 / (16 * 9), rel=0.05)
    assert p["2.weight"].var().item() == pytest.approx(2 / 512, rel=0.05)
    assert p["0.bias"].abs().max() == 0 and p["2.bias"].abs().max() == 0
    assert p["0.weight"].abs().max() <= math.sqrt(6 / (16 * 9))


def test_kaiming_keeps_a_deep_relu_nets_signal_where_torchs_default_shrinks_it():
    """PyTorch's default (variance 1 / (3 fan_in)) divides the second moment by 6 per ReLU layer: a 4-layer
    net's output is nearly input-independent, which is why the CIFAR CNN starts (and with an untrained
    fine-tuner stays) at chance. He init keeps the scale."""
    torch.manual_seed(0)
    model, x = _deep_relu(), torch.randn(64, 256)

    def out_rms(scheme):
        p = {k: v[0] for k, v in RandomInit(model, scheme=scheme).sample(1).items()}
        return functional_call(model, p, (x,)).pow(2).mean().sqrt().item()

    x_rms = x.pow(2).mean().sqrt().item()
    assert 0.5 < out_rms("kaiming") / x_rms < 2.0
    assert out_rms("torch") / x_rms < 0.1
