"""MetaLearner.task_starts: the per-task starting points a user (or a trace script) fine-tunes from."""

import pytest
import torch

from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit, RandomInit
from innerloop.models import MLP
from innerloop.oracles import AutogradOracle
from innerloop.rules import SGD


def meta_with(init_cls):
    torch.manual_seed(0)
    model = MLP(2, [5], 3)
    return MetaLearner(Learner(model, "cross_entropy"), init_cls(model), SGD(0.1), AutogradOracle("first"), steps=2)


def test_shared_init_is_the_same_for_every_task():
    meta = meta_with(LearnedInit)
    starts, others = meta.task_starts(next(iter(meta.learners)), 4)
    theta0, _ = meta.start()
    assert set(starts) == set(theta0) and not others
    for k, v in starts.items():
        assert v.shape == (4, *theta0[k].shape)
        assert torch.equal(v[3], theta0[k])


def test_random_init_draws_a_different_start_per_task():
    meta = meta_with(RandomInit)
    family = next(iter(meta.learners))
    starts, _ = meta.task_starts(family, 3)
    w = next(iter(starts.values()))
    assert w.shape[0] == 3 and not torch.equal(w[0], w[1])
    with pytest.raises(ConfigError, match="fresh initialisation per task"):
        meta.start()


def test_groups_names_the_unknown_family():
    meta = meta_with(LearnedInit)
    with pytest.raises(ConfigError, match="unknown task families"):
        meta.groups({"nope": None})
