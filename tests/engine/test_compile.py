"""``train.compile``: the compiled vmap meta-loss gives the eager meta-gradient (float64), for a rule without and a
rule with meta-parameters of its own; the unsupported combinations fail with a one-line error."""

import pytest
import torch

from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit
from innerloop.models import MLP, Conv4
from innerloop.oracles import AutogradOracle
from innerloop.rules import ALFA, SGD


@pytest.mark.parametrize("kind", ["sgd", "alfa"])
def test_compiled_vmap_meta_gradient_equals_eager(kind, sine_batch):
    torch.manual_seed(0)
    model = MLP(1, [8, 8], 1, "tanh").double()
    grads = []
    for compile in (False, True):
        learner = Learner(model, "mse")
        torch.manual_seed(1)
        rule = SGD(0.3) if kind == "sgd" else ALFA({n: model.get_parameter(n).shape for n in learner.inner}, 2, lr=0.1, form="paper").double()
        meta = MetaLearner(learner, LearnedInit(model).double(), rule, AutogradOracle("second"), steps=2,
                           executor="vmap", compile=compile)
        for _ in range(2):  # the second call reuses the compiled graph
            meta.zero_grad()
            losses, _ = meta.meta_backward(sine_batch)
        grads.append([p.grad.clone() for p in meta.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_compile_needs_the_vmap_executor():
    model = Conv4(1, 3, filters=4, image_size=16)
    with pytest.raises(ConfigError, match="train.compile"):
        MetaLearner(Learner(model, "cross_entropy"), LearnedInit(model), SGD(0.1), steps=1, executor="loop", compile=True)
    mlp = MLP(1, [4], 1)
    with pytest.raises(ConfigError, match="checkpoint_unroll"):
        MetaLearner(Learner(mlp, "mse"), LearnedInit(mlp), SGD(0.1), steps=2, executor="vmap", checkpoint=1, compile=True)
