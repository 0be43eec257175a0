"""N-way K-shot episode sampler over a class-indexed image array."""

import numpy as np
import pytest
import torch

from innerloop.data.base import ImageDataset
from innerloop.errors import ConfigError
from innerloop.tasks import EpisodeTasks


def dataset(classes=7, per_class=6, size=4, channels=1, seed=0):
    """Every image is unique and encodes (class, index) in its first two pixels."""
    rng = np.random.default_rng(seed)
    n = classes * per_class
    images = rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)
    labels = np.repeat(np.arange(classes), per_class)
    images[:, 0, 0, 0] = labels
    images[:, 0, 0, 1] = np.tile(np.arange(per_class), classes)
    perm = rng.permutation(n)  # class order in the array must not matter
    return ImageDataset(images[perm], labels[perm], [f"c{i}" for i in range(classes)], "toy")


def test_shapes_labels_and_disjoint_support_query():
    tasks = EpisodeTasks(dataset(), ways=3, shots=2, query=3, eval_query=3)
    xs, ys, xq, yq = tasks.train_batch(4, seed=0, iteration=5)
    assert xs.shape == (4, 6, 1, 4, 4) and xq.shape == (4, 9, 1, 4, 4)
    assert ys.dtype == torch.int64 and ys[0].tolist() == [0, 0, 1, 1, 2, 2] and yq[0].tolist() == [0] * 3 + [1] * 3 + [2] * 3
    for t in range(4):
        cls_s = (xs[t, :, 0, 0, 0] * 255).round().long()
        cls_q = (xq[t, :, 0, 0, 0] * 255).round().long()
        # one original class per label, the same class in support and query, 3 distinct classes
        for w in range(3):
            assert cls_s[ys[t] == w].unique().numel() == 1
            assert set(cls_q[yq[t] == w].tolist()) == set(cls_s[ys[t] == w].tolist())
        assert cls_s.unique().numel() == 3
        ident = lambda x: set(map(tuple, (x[t, :, 0, 0, :2] * 255).round().long().tolist()))
        assert not ident(xs) & ident(xq)  # no image is both support and query
        assert len(ident(xs)) + len(ident(xq)) == 15


def test_training_episodes_are_a_function_of_seed_and_iteration():
    tasks = EpisodeTasks(dataset(), ways=3, shots=1, query=2, eval_query=2)
    a, b, c = tasks.train_batch(3, 1, 7), tasks.train_batch(3, 1, 7), tasks.train_batch(3, 1, 8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_fixed_evaluation_episodes_and_chunked_materialisation():
    tasks = EpisodeTasks(dataset(), ways=3, shots=1, query=2, eval_query=4)
    full = tasks.eval_set(10, seed=2020)
    again = EpisodeTasks(dataset(), ways=3, shots=1, query=5, eval_query=4).eval_set(10, seed=2020)
    assert all(torch.equal(x, y) for x, y in zip(full, again))  # same tasks whatever the training settings
    parts = list(tasks.eval_batches(10, seed=2020, chunk=4))
    assert [p[0].shape[0] for p in parts] == [4, 4, 2]
    for i in range(4):
        torch.testing.assert_close(torch.cat([p[i] for p in parts]), full[i])


def test_normalisation_per_channel():
    tasks = EpisodeTasks(dataset(channels=3), ways=2, shots=1, query=1, eval_query=1, mean=[0.5] * 3, std=[0.25] * 3)
    raw = EpisodeTasks(dataset(channels=3), ways=2, shots=1, query=1, eval_query=1)
    torch.testing.assert_close(tasks.train_batch(2, 0, 0)[0], (raw.train_batch(2, 0, 0)[0] - 0.5) / 0.25)


@pytest.mark.parametrize("kw, match", [
    ({"ways": 8}, "8-way episodes need 8 classes.*has 7: lower task.ways"),
    ({"shots": 4, "query": 3}, "needs 7 images per class.*has 6: lower task.shots or task.query"),
    ({"shots": 1, "query": 1, "eval_query": 6}, "task.eval_query"),
    ({"ways": 1}, "at least 2 classes"),
])
def test_impossible_requests_fail_before_training(kw, match):
    with pytest.raises(ConfigError, match=match):
        EpisodeTasks(dataset(), **{"ways": 3, "shots": 1, "query": 1, "eval_query": 1, **kw})


def test_cross_domain_evaluation_uses_the_other_dataset():
    other = dataset(classes=4, per_class=20, seed=3)
    tasks = EpisodeTasks(dataset(), ways=3, shots=1, query=2, eval_data=other, eval_query=10)
    assert tasks.eval_set(2, seed=0)[2].shape == (2, 30, 1, 4, 4)  # 10 queries per class fit only in `other`
    with pytest.raises(ConfigError, match="same image size"):
        EpisodeTasks(dataset(), ways=3, shots=1, query=1, eval_query=1, eval_data=dataset(size=5))
