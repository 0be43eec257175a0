import pytest
import torch

from innerloop.models import MLP
from innerloop.tasks import SinusoidTasks


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def small_mlp():
    # tanh, not ReLU: finite differences must not straddle a kink
    torch.manual_seed(0)
    return MLP(1, [8, 8], 1, activation="tanh").double()


@pytest.fixture
def sine_batch():
    return SinusoidTasks(shots=5, query=6).train_batch(3, seed=1, iteration=0, dtype=torch.float64)
