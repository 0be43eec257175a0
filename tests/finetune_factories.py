"""Model factories for the ``innerloop finetune --model tests.finetune_factories:NAME`` tests (good and hostile)."""

import torch
from torch import nn


def good():
    """1 -> 1 regressor: outputs [N, 1]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))


def classifier():
    """2 features -> 3 classes: outputs [N, 3]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3))


def not_a_module():
    return 42


def raises():
    raise ValueError("the factory fails")


NOT_CALLABLE = 5


def no_parameters():
    return nn.Identity()


def nan_weights():
    model = good()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    return model


class _TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        return self.lin(x), x


def tuple_output():
    return _TupleOut()


class _Branchy(nn.Module):
    """Data-dependent control flow: fine eagerly, impossible under ``torch.vmap`` (used by ``--oracle zo``)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        h = self.lin(x)
        return h if h.mean() > -1e9 else -h


def branchy():
    torch.manual_seed(0)
    return _Branchy()


def linear():
    """1 -> 1 affine map: no saturation, so a huge x overflows the loss."""
    torch.manual_seed(0)
    return nn.Linear(1, 1)


class _Detached(nn.Module):
    """Runs, but its output carries no gradient: ``--oracle fo`` cannot differentiate it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        return self.lin(x).detach()


def detached():
    torch.manual_seed(0)
    return _Detached()
