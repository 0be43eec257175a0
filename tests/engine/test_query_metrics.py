"""``Learner(query_metrics=...)``: extra query-set metrics from the same unroll equal separate evaluations."""

import torch
from torch import nn

from innerloop.engine import Learner, MetaLearner
from innerloop.inits import RandomInit
from innerloop.oracles import AutogradOracle
from innerloop.rules import Adam


def test_query_metrics_equal_separate_evaluations_at_every_recorded_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(4, 9, 6, generator=g), torch.randint(0, 3, (4, 9), generator=g),
             torch.randn(4, 12, 6, generator=g), torch.randint(0, 3, (4, 12), generator=g))
    marks = [0, 2, 7]

    def scores(**kw):
        meta = MetaLearner(Learner(model, "cross_entropy", **kw), RandomInit(model), Adam(0.05),
                           AutogradOracle("first"), steps=7)
        return meta.evaluate(batch, record=marks, seed=3)

    both, info = scores(metric="loss", query_metrics={"accuracy": "accuracy", "mse_of_logits": lambda o, y: o.pow(2).mean()})
    loss, _ = scores(metric="loss")
    acc, _ = scores()
    torch.testing.assert_close(both, loss, rtol=0, atol=0)
    torch.testing.assert_close(info["metric/accuracy"], acc, rtol=0, atol=0)
    assert info["metric/mse_of_logits"].shape == (4, 3)
    assert not torch.equal(loss[:, 0], loss[:, 2])  # the steps moved the model
