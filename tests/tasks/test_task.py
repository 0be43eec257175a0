"""``Task`` / ``TaskBatch``: named fields accepted wherever the engine takes a tuple; anything else is one line."""

from __future__ import annotations

import pytest
import torch

from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit
from innerloop.models import MLP
from innerloop.rules import SGD
from innerloop.tasks import SinusoidTasks, Task, TaskBatch


def meta():
    torch.manual_seed(0)
    model = MLP(1, [8], 1)
    return MetaLearner(Learner(model, "mse"), LearnedInit(model), SGD(0.1), steps=2)


def test_named_batches_give_the_tuple_results():
    m = meta()
    plain = SinusoidTasks(shots=5, query=5).train_batch(4, 0, 0)
    named = TaskBatch(*plain)
    assert named.support_x is plain[0] and named.query_y is plain[3]
    l1, _ = m.meta_backward(plain)
    g1 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    l2, _ = m.meta_backward(named)
    assert torch.equal(l1, l2) and all(torch.equal(a, p.grad) for a, p in zip(g1, m.parameters()))
    assert torch.equal(m.evaluate(named)[0], m.evaluate(plain)[0])
    one = named.task(2)
    assert isinstance(one, Task) and torch.equal(one.support_x, plain[0][2])
    restacked = TaskBatch.stack([named.task(i) for i in range(4)])
    assert all(torch.equal(a, b) for a, b in zip(restacked, plain))
    # a list of tasks runs on the loop executor (task by task), a stacked batch may be vmapped: equal up to rounding
    torch.testing.assert_close(m.evaluate([named.task(i) for i in range(4)])[0], m.evaluate(plain)[0])


def test_anything_else_is_a_one_line_error():
    m = meta()
    plain = SinusoidTasks(shots=5, query=5).train_batch(2, 0, 0)
    for bad, match in [(plain[:3], "TaskBatch"), (Task(*(t[0] for t in plain)), "one Task"),
                       ((plain[0], plain[1], plain[2][:1], plain[3][:1]), "leading"), ("tasks", "TaskBatch"),
                       ({"other": plain}, "unknown task families")]:
        with pytest.raises(ConfigError, match=match) as e:
            m.evaluate(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="TaskBatch.stack"):
        TaskBatch.stack([])
