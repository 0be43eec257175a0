"""The checkpointed unroll recomputes each segment with the same random draws in backward: with a zeroth-order
oracle (random directions at every step) its meta-gradient equals the plain unroll's, whether the directions are
keyed by task and step (recomputed from the key) or drawn from the global stream (the RNG state is replayed).
Before the fix the recomputation drew fresh directions, so forward and backward saw different inner trajectories."""

import pytest
import torch

from innerloop.engine import Learner, MetaLearner
from innerloop.inits import LearnedInit
from innerloop.oracles.zeroth_order import ZerothOrderOracle
from innerloop.rules import SGD
from innerloop.models import MLP


def grads(executor: str, checkpoint: int, batch, noise: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = MLP(1, [8, 8], 1, activation="tanh").double()
    meta = MetaLearner(Learner(model, "mse"), LearnedInit(model), SGD(0.05).double(), ZerothOrderOracle(q=4, mu=1e-3, noise=noise),
                       steps=4, executor=executor, checkpoint=checkpoint, workers=1)
    torch.manual_seed(123)
    meta.meta_backward(batch)
    return [p.grad.clone() for p in meta.parameters() if p.requires_grad]


@pytest.mark.parametrize("noise", ["keyed", "stream"])
@pytest.mark.parametrize("executor", ["vmap", "loop"])
def test_zeroth_order_meta_gradient_is_the_same_with_a_checkpointed_unroll(executor, noise):
    g = torch.Generator().manual_seed(1)
    batch = tuple(torch.randn(3, 6, 1, generator=g, dtype=torch.float64) for _ in range(4))
    plain = grads(executor, 0, batch, noise)
    for every in (1, 2):
        for a, b in zip(plain, grads(executor, every, batch, noise)):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), float((a - b).abs().max())
