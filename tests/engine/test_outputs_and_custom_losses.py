"""``meta.evaluate(..., outputs=True)`` returns the query outputs, labels and predictions behind the per-task scores;
a loss may be any callable, with a named or callable metric."""

from __future__ import annotations

import pytest
import torch

from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit
from innerloop.models import MLP, Conv4
from innerloop.rules import SGD
from tests.engine.test_normalisation import episode_batch


def test_outputs_labels_and_predictions_match_the_scores():
    torch.manual_seed(0)
    model = Conv4(1, 3, filters=4, image_size=16).double()
    meta = MetaLearner(Learner(model, "cross_entropy"), LearnedInit(model).double(), SGD(0.3), steps=2)
    b = episode_batch(tasks=5)
    scores, info = meta.evaluate(b, outputs=True)
    assert info["outputs"].shape == (*b[3].shape, 3) and torch.equal(info["labels"], b[3])
    assert torch.equal(info["predictions"], info["outputs"].argmax(-1))
    accuracy = (info["predictions"] == info["labels"]).double().mean(-1)
    torch.testing.assert_close(accuracy, scores)
    assert "outputs" not in meta.evaluate(b)[1]
    adapted = meta.adapt(b[0][1], b[1][1], steps=2)  # one task by hand: the same logits
    torch.testing.assert_close(adapted.predict(b[2][1]), info["outputs"][1])


def test_a_callable_loss_and_metric():
    torch.manual_seed(0)
    model = MLP(1, [8], 1).double()
    huber = lambda out, y: torch.where((out - y).abs() < 1, 0.5 * (out - y) ** 2, (out - y).abs() - 0.5).mean()
    mae = lambda out, y: (out - y).abs().mean()
    g = torch.Generator().manual_seed(1)
    b = tuple(torch.randn(3, 6, 1, generator=g, dtype=torch.float64) for _ in range(4))
    for metric, check in [(None, "loss"), ("mse", "mse"), (mae, "<lambda>")]:
        learner = Learner(model, huber, metric=metric)
        assert learner.metric_name == check and learner.loss_name == "custom"
        meta = MetaLearner(learner, LearnedInit(model).double(), SGD(0.1).double(), steps=1)
        losses, _ = meta.meta_backward(b)
        assert torch.isfinite(losses).all()
        values, _ = meta.evaluate(b)
        assert values.shape == (3,)
    with pytest.raises(ConfigError, match="loss must be a name"):
        Learner(model, 3)
    with pytest.raises(ConfigError, match="unknown metric"):
        Learner(model, "mse", metric="f1")
