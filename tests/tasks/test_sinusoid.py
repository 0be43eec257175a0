import math

import torch

from innerloop.tasks import SinusoidTasks


def test_ranges_and_shapes():
    t = SinusoidTasks(shots=5, query=7)
    xs, ys, xq, yq = t.train_batch(200, seed=0, iteration=3)
    assert xs.shape == (200, 5, 1) and xq.shape == (200, 7, 1)
    x = torch.cat([xs, xq], 1)
    y = torch.cat([ys, yq], 1)
    assert x.min() >= -5 and x.max() <= 5
    assert y.abs().max() <= 5.0


def test_batches_are_pure_functions_of_seed_and_iteration():
    t = SinusoidTasks()
    a, b = t.train_batch(3, 1, 5), t.train_batch(3, 1, 5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = t.train_batch(3, 1, 6)
    assert not torch.equal(a[0], c[0])


def test_eval_set_is_fixed_and_independent_of_training_query_size():
    a = SinusoidTasks(shots=10, query=10).eval_set(50, 2020, 100)
    b = SinusoidTasks(shots=10, query=3).eval_set(50, 2020, 100)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a[2].shape == (50, 100, 1)


def test_frequency_enters_the_function():
    t = SinusoidTasks(shots=1, query=1, amplitude=(1, 1), frequency=(2, 2), phase=(0, 0))
    xs, ys, _, _ = t.train_batch(4, 0, 0, dtype=torch.float64)
    torch.testing.assert_close(ys, torch.sin(2 * xs))
