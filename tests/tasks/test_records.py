"""The records task family (Meta-Dataset episodes for training and evaluation) on format-exact fixture records."""

import pytest
import torch

from innerloop import config
from innerloop.build import build_meta, build_tasks, spec_of
from innerloop.errors import ConfigError
from innerloop.tasks.records import RecordTasks
from innerloop.tasks.task import TaskBatch
from tests.data.metadataset.fixtures import write_bilevel, write_flat


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("records")
    write_bilevel(base / "bilevel")  # Omniglot-shaped, grayscale: training
    write_flat(base / "flat")  # RGB, TEST classes 11..15: a held-out source
    return base


def tasks(root, **kw):
    return RecordTasks(root, ["bilevel"], ["bilevel", "flat"], image_size=8, max_ways=8, **kw)


def check_episode(task, max_ways):
    xs, ys, xq, yq = task
    ways = int(ys.max()) + 1
    assert 5 <= ways <= max_ways  # Meta-Dataset's min_ways (5) .. the bound
    assert torch.equal(ys.unique(), torch.arange(ways)) and torch.equal(yq.unique(), torch.arange(ways))
    assert xs.shape[1:] == xq.shape[1:] == (3, 8, 8) and xs.dtype == torch.float32
    return ways


def test_training_batches_are_variable_way_and_a_pure_function_of_seed_and_iteration(root):
    fam = tasks(root)
    a, b, c = fam.train_batch(4, 0, 7), fam.train_batch(4, 0, 7), fam.train_batch(4, 0, 8)
    assert isinstance(a, list) and len(a) == 4  # ragged: the engine runs them one by one
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)
    assert any(not torch.equal(x[0], y[0]) if x[0].shape == y[0].shape else True for x, y in zip(a, c))
    ways = {check_episode(t, 8) for i in range(6) for t in fam.train_batch(4, 0, i)}
    assert len(ways) > 1  # the number of classes varies


def test_fixed_shape_episodes_are_stacked(root):
    batch = tasks(root, ways=5, shots=2, query=1).train_batch(3, 0, 0)
    assert isinstance(batch, TaskBatch) and batch.support_x.shape == (3, 10, 3, 8, 8)
    assert batch.query_y.tolist() == [[0, 1, 2, 3, 4]] * 3


def test_evaluation_episodes_are_fixed_per_source_and_drawn_from_its_test_classes(root):
    fam = tasks(root)
    whole = [t for b in fam.eval_batches(6, 3, chunk=6, sources=["flat"]) for t in b]
    chunked = [t for b in fam.eval_batches(6, 3, chunk=4, sources=["flat"]) for t in b]
    again = [t for b in tasks(root).eval_batches(6, 3, chunk=6, sources=["flat"]) for t in b]
    for x, y, z in zip(whole, chunked, again):
        for u, v, w in zip(x, y, z):
            assert torch.equal(u, v) and torch.equal(u, w)
    for xs, ys, xq, yq in whole:  # fixture pixels: red = class id; the flat source's TEST classes are 11..15
        red = torch.cat([xs, xq])[:, 0].mul(255).round().unique()
        assert set(red.tolist()) <= {11.0, 12.0, 13.0, 14.0, 15.0}
    both = list(fam.eval_batches(2, 3, chunk=2))
    assert len(both) == 2  # one chunk per evaluation source


def test_signed_pixels_and_missing_records(root, tmp_path):
    fam = tasks(root, mean=(0.5,) * 3, std=(0.5,) * 3)
    x = fam.train_batch(1, 0, 0)[0][0]
    assert x.min() >= -1 and x.max() <= 1 and x.min() < 0
    with pytest.raises(ConfigError, match="innerloop data to-records omniglot"):
        RecordTasks(tmp_path, ["omniglot"])
    with pytest.raises(ConfigError, match="exceeds task.max_ways"):
        RecordTasks(root, ["bilevel"], ways=9, max_ways=8)


def records_config(root, **task):
    sets = {"task.family": '"records"', "task.records": f'"{root}"', "task.sources": '["bilevel"]',
            "task.eval_sources": '["bilevel", "flat"]', "task.ways": 0, "task.shots": 0, "task.query": 0,
            "task.image_size": 16, "task.max_ways": 8, "task.max_support": 20, "task.max_query": 2,
            "task.normalize": '"signed"', "model.name": '"conv4"', "model.filters": 4, "inner.steps": 1,
            "train.iterations": 2, "train.meta_batch": 2, **task}
    return config.load(None, [f"{k}={v}" for k, v in sets.items()])


def test_config_builds_a_masked_learner_and_a_spec(root):
    cfg = records_config(root)
    fam = build_tasks(cfg)
    spec = spec_of(fam)
    assert spec == {"image_shape": [3, 16, 16], "ways": 8, "variable_ways": True}
    meta = build_meta(cfg, spec)
    assert meta.learner.variable_ways
    losses, _ = meta.meta_backward(fam.train_batch(2, 0, 0))
    assert torch.isfinite(losses).all()
    assert not build_meta(records_config(root, **{"task.ways": 5}), spec_of(
        build_tasks(records_config(root, **{"task.ways": 5})))).learner.variable_ways


@pytest.mark.parametrize("sets, message", [
    ({"task.ways": 1}, "0 \\(variable\\) or 2..task.max_ways"),
    ({"task.max_support": 4}, "max_support >= max_ways"),
    ({"task.shots": -1}, "records: task.shots and task.query >= 0"),
])
def test_config_rejects_impossible_records_settings(root, sets, message):
    with pytest.raises(ConfigError, match=message):
        records_config(root, **sets)


def test_records_keys_belong_to_the_records_family():
    with pytest.raises(ConfigError, match='task.max_ways applies to task.family = "records"'):
        config.load("omniglot/maml", ["task.max_ways=20"])
    with pytest.raises(ConfigError, match="task.shots, task.query and task.eval_query must all be >= 1"):
        config.load("omniglot/maml", ["task.shots=0"])
