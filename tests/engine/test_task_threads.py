"""``train.workers``: the loop executor's tasks in threads give exactly the sequential loop's numbers."""

import threading

import pytest
import torch

from innerloop.engine import Learner, MetaLearner
from innerloop.engine.executor import loop_parallel
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit, RandomInit
from innerloop.models import MLP, Conv4
from innerloop.oracles import ZerothOrderOracle
from innerloop.rules import ALFA, SGD, CoordinateLSTM
from tests.engine.test_normalisation import episode_batch


def conv_meta(workers, rule="sgd", model=None):
    torch.manual_seed(0)
    model = model or Conv4(1, 3, filters=4, image_size=16).double()
    learner = Learner(model, "cross_entropy")
    torch.manual_seed(1)
    r = SGD(0.3) if rule == "sgd" else ALFA({n: model.get_parameter(n).shape for n in learner.inner}, 2, lr=0.1, form="paper").double()
    return MetaLearner(learner, LearnedInit(model).double(), r, steps=2, executor="loop", workers=workers)


def grads(meta, batch):
    meta.zero_grad(set_to_none=True)
    losses, aux = meta.meta_backward(batch)
    return losses, [p.grad.clone() for p in meta.parameters() if p.grad is not None]


@pytest.mark.parametrize("rule", ["sgd", "alfa"])
def test_threads_give_the_sequential_loops_meta_gradient_bit_for_bit(rule):
    batch = episode_batch(tasks=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers run single-threaded: compare like with like
    try:
        l1, g1 = grads(conv_meta(1, rule), batch)
        l3, g3 = grads(conv_meta(3, rule), batch)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(l1, l3)
    assert len(g1) == len(g3) > 0
    assert all(torch.equal(a, b) for a, b in zip(g1, g3))
    assert torch.get_num_threads() == threads  # restored after the parallel section


def test_threads_accumulate_into_existing_gradients_and_evaluate_identically():
    batch = episode_batch(tasks=4)
    seq, par = conv_meta(1), conv_meta(2)
    for m in (seq, par):
        m.zero_grad(set_to_none=True)
        m.meta_backward(batch)
        m.meta_backward(batch)  # a second meta-batch adds to .grad, as with gradient accumulation
    for a, b in zip(seq.parameters(), par.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(seq.evaluate(batch, steps=3)[0], par.evaluate(batch, steps=3)[0], rtol=0, atol=0)


def test_fresh_random_inits_and_a_learned_rule_in_threads():
    """The LFT setting: a per-task random init (drawn before the threads start) and an LSTM rule."""
    model = MLP(1, [6, 6], 1, "tanh").double()
    from innerloop.tasks import SinusoidTasks

    batch = SinusoidTasks(shots=5, query=5).train_batch(4, seed=0, iteration=0, dtype=torch.float64)
    out = []
    for workers in (1, 2):
        torch.manual_seed(3)
        meta = MetaLearner(Learner(model, "mse"), RandomInit(model).double(), CoordinateLSTM().double(), steps=3,
                           executor="loop", workers=workers)
        torch.manual_seed(4)
        out.append(grads(meta, batch)[1])
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_each_worker_runs_its_own_copy_of_the_module():
    """functional_call swaps tensors into the module it runs: one module shared by two threads would mix
    their weights (found by this feature's first version: 'backward through the graph a second time')."""
    learner = Learner(MLP(1, [4], 1), "mse")
    seen = []

    def task(i):
        seen.append(id(learner._replica.model))
        return (torch.zeros(()),)

    loop_parallel(task, [torch.arange(4)], 4, 2, False, 1.0, [], replicate=learner.use_replica)
    assert len(seen) == 4 and len(set(seen)) == 2 and id(learner.model) not in seen  # one copy per worker
    assert getattr(learner._replica, "model", None) is None  # the main thread keeps the original


def test_a_worker_error_reaches_the_caller():
    def boom(i):
        if int(i) == 2:
            raise ValueError("task 2 failed")
        return (torch.zeros(()),)

    with pytest.raises(ValueError, match="task 2 failed"):
        loop_parallel(boom, [torch.arange(4)], 4, 2, False, 1.0, [])


def test_grad_mode_is_carried_into_the_workers():
    modes = []

    def task(i):
        modes.append((threading.current_thread().name.startswith("innerloop-task"), torch.is_grad_enabled()))
        return (torch.zeros(()),)

    with torch.no_grad():
        loop_parallel(task, [torch.arange(3)], 3, 2, False, 1.0, [])
    assert modes and all(worker and not enabled for worker, enabled in modes)


def test_workers_settings_are_checked():
    model = Conv4(1, 3, filters=4, image_size=16)
    with pytest.raises(ConfigError, match="train.workers"):
        MetaLearner(Learner(model, "cross_entropy"), LearnedInit(model), SGD(0.1), steps=1, workers=-1)
    with pytest.raises(ConfigError, match="oracle.noise = 'keyed'"):
        MetaLearner(Learner(model, "cross_entropy"), LearnedInit(model), SGD(0.1), ZerothOrderOracle(noise="stream"),
                    steps=1, workers=2)
    import os

    assert MetaLearner(Learner(model, "cross_entropy"), LearnedInit(model), SGD(0.1), steps=1,
                       workers=0).workers == (os.cpu_count() or 1)
