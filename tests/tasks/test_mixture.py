"""Incongruous meta-batches on real data: MNIST-MLP and CIFAR-CNN tasks trained by one fine-tuner."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from innerloop import config
from innerloop.build import build
from innerloop.data.base import ImageDataset
from innerloop.errors import ConfigError
from innerloop.tasks import EpisodeTasks, TaskMixture
from innerloop.train import train
from tests.blackbox import ForwardOnly

SHARED = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))
needs_data = pytest.mark.skipif(not (SHARED / "mnist").is_dir() or not (SHARED / "cifar10").is_dir(),
                                reason="shared MNIST / CIFAR-10 data not present")
SMALL = ["model.hidden=[16]", "model.filters=4", "inner.steps=3", "train.truncation=3", "train.meta_batch=6",
         "train.iterations=2", "train.log_every=1", "eval.tasks=4", "eval.steps=3"]


def toy(classes=4, per=6, size=4, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return ImageDataset(rng.integers(0, 256, (classes * per, channels, size, size), dtype=np.uint8),
                        np.repeat(np.arange(classes), per))


def test_support_from_train_split_query_from_test_split_and_original_labels():
    train, test = toy(seed=0), toy(seed=1)
    tasks = EpisodeTasks(train, ways=2, shots=2, query=3, eval_query=3, query_data=test, relabel=False)
    xs, ys, xq, yq = tasks.train_batch(5, 0, 0)
    train_px = {tuple(im.flatten()) for im in train.images}
    test_px = {tuple(im.flatten()) for im in test.images}
    for t in range(5):
        assert all(tuple((x * 255).round().byte().flatten().tolist()) in train_px for x in xs[t])
        assert all(tuple((x * 255).round().byte().flatten().tolist()) in test_px for x in xq[t])
        assert set(ys[t].tolist()) == set(yq[t].tolist()) and len(set(ys[t].tolist())) == 2  # original class ids
    assert set(ys.unique().tolist()) <= {0, 1, 2, 3}


def test_mixture_batches_are_dicts_of_sources_seeded_by_iteration():
    mix = TaskMixture({"a": EpisodeTasks(toy(), 2, 1, 1, eval_query=1), "b": EpisodeTasks(toy(channels=3), 2, 1, 1, eval_query=1)},
                      ["a", "b"])
    b1, b2 = mix.train_batch(20, 0, 3), mix.train_batch(20, 0, 3)
    assert set(b1) == {"a", "b"} and sum(v[0].shape[0] for v in b1.values()) == 20
    assert all(torch.equal(b1[k][0], b2[k][0]) for k in b1)
    ev = mix.eval_set(7, seed=1)
    assert {k: v[0].shape[0] for k, v in ev.items()} == {"a": 7, "b": 7}
    with pytest.raises(ConfigError, match="unknown task source"):
        TaskMixture({"a": EpisodeTasks(toy(), 2, 1, 1, eval_query=1)}, ["a"], ["c"])


@needs_data
def test_one_fine_tuner_meta_trains_mlp_and_cnn_tasks_in_one_meta_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    cfg = config.load("lft/classification", SMALL)
    tasks, meta = build(cfg)
    batch = tasks.train_batch(6, 0, 0)
    assert set(batch) == {"mnist", "cifar10"}  # this seed draws both sources into the one meta-batch
    shapes = {k: {n: tuple(p.shape) for n, p in meta.learners[k].model.named_parameters()} for k in batch}
    assert shapes["mnist"]["net.0.weight"] == (16, 784) and shapes["cifar10"]["blocks.0.conv.weight"] == (4, 3, 3, 3)
    meta.zero_grad()
    losses, _ = meta.meta_backward(batch)
    assert losses.shape == (6,) and torch.isfinite(losses).all()
    grads = [p.grad for p in meta.rule.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    # each family alone contributes to the same rule's gradient
    for family in batch:
        meta.zero_grad()
        meta.meta_backward({family: batch[family]})
        assert sum(float(p.grad.abs().sum()) for p in meta.rule.parameters()) > 0
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["iterations"] == 2


def test_maml_refuses_incongruous_sources():
    with pytest.raises(ConfigError, match="MAML does not apply"):
        config.load("lft/classification-maml", ['task.sources=["mnist", "cifar10"]'])
    with pytest.raises(ConfigError, match="shape-agnostic rule"):
        config.load("lft/classification", ['rule.kind="alfa"'])


VICTIMS = Path(__file__).resolve().parents[2] / "results" / "victims"


@needs_data
@pytest.mark.skipif(not (VICTIMS / "mnist" / "victim.pt").is_file(), reason="committed victims not present")
def test_uap_tasks_use_only_correctly_classified_images_and_the_victims_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_VICTIMS", str(VICTIMS))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    cfg = config.load("lft/uap", ['task.sources=["mnist", "cifar10"]', "inner.steps=2", "train.truncation=2",
                                  'oracle.kind="zo"', "oracle.q=3", "eval.tasks=3", "eval.steps=2"])
    tasks, meta = build(cfg)
    batch = tasks.train_batch(8, 0, 1)
    for source, (xs, ys, xq, yq) in batch.items():
        victim = meta.learners[source].model.victim
        assert [n for n, _ in meta.learners[source].model.named_parameters()] == ["delta"]
        for x, y in ((xs, ys), (xq, yq)):
            with torch.no_grad():
                pred = victim(x.flatten(0, 1)).argmax(-1)
            assert torch.equal(pred, y.flatten())  # only images the victim gets right, in its own label space
    assert {k: meta.learners[k].num_inner for k in meta.learners} == {"mnist": 784, "cifar10": 3072}
    meta.meta_backward(batch)  # one zeroth-order fine-tuner step over both perturbation sizes
    assert all(p.grad is not None for p in meta.rule.parameters())


@needs_data
@pytest.mark.skipif(not (VICTIMS / "mnist" / "victim.pt").is_file(), reason="committed victims not present")
@pytest.mark.parametrize("detach", [False, True])
def test_zeroth_order_evaluation_only_queries_the_victim(tmp_path, monkeypatch, detach):
    """At test time a ZO fine-tuner sees the victim as a black box: forward calls without autograd, no backward."""
    from innerloop.evaluate import evaluate_meta

    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_VICTIMS", str(VICTIMS))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    cfg = config.load("lft/uap", ['task.sources=["mnist", "cifar10"]', "inner.steps=2", "train.truncation=2",
                                  'oracle.kind="zo"', "oracle.q=3", f"oracle.detach={str(detach).lower()}",
                                  "eval.tasks=3", "eval.steps=4"])
    tasks, meta = build(cfg)
    boxes = []
    for learner in meta.learners.values():
        learner.model.victim = ForwardOnly(learner.model.victim)
        boxes.append(learner.model.victim)
    res = evaluate_meta(cfg, meta, tasks, sources=["mnist", "cifar10"])
    assert res["tasks"] == 6 and 0.0 <= res["mean"] <= 100.0
    assert all(b.calls and not any(b.calls) for b in boxes)  # every query of both victims ran without autograd
    # the wrapper does catch a backward: meta-training backpropagates the validation loss through the victim
    with pytest.raises(AssertionError, match="black-box victim"):
        meta.meta_backward(tasks.train_batch(2, 0, 0))


def test_holdout_classes_never_train_and_are_the_only_test_classes(tmp_path, monkeypatch):
    """``task.holdout_classes``: training episodes of mnist/cifar10 come from the other classes, test episodes only
    from the held-out ones (a fine-tuner is scored on problems it never saw)."""
    from innerloop import build as B

    def fake_load(cfg, dataset, root, split):  # 10 classes whose pixels say their class id
        labels = np.repeat(np.arange(10), 25)
        images = np.broadcast_to(labels[:, None, None, None], (250, 1, 4, 4)).astype(np.uint8).copy()
        return ImageDataset(images, labels, [str(c) for c in range(10)], dataset)

    monkeypatch.setattr(B, "_load", fake_load)
    cfg = config.load("lft/classification", ['task.sources=["mnist"]', "task.holdout_classes=[7, 8, 9]"])
    tasks = B.build_tasks(cfg)
    seen = set()
    for it in range(30):
        xs, _, xq, _ = tasks.train_batch(4, 0, it)["mnist"]
        seen |= set((torch.cat([xs.flatten(0, 1), xq.flatten(0, 1)]).flatten(1)[:, 0] * 255).round().long().tolist())
    assert seen == set(range(7))  # every training class, no held-out one
    test = set()
    for b in tasks.eval_batches(40, 1, chunk=20):
        xs, _, xq, _ = b["mnist"]
        test |= set((torch.cat([xs.flatten(0, 1), xq.flatten(0, 1)]).flatten(1)[:, 0] * 255).round().long().tolist())
    assert test == {7, 8, 9}


def test_holdout_classes_and_mixture_sources_are_validated():
    with pytest.raises(ConfigError, match="distinct class ids in 0..9"):
        config.load("lft/classification", ["task.holdout_classes=[7, 7]"])
    with pytest.raises(ConfigError, match="each needs task.ways"):
        config.load("lft/classification", ["task.holdout_classes=[9]"])
    with pytest.raises(ConfigError, match="applies to the mnist and cifar10 sources"):
        config.load("lft/classification", ['task.sources=["sinusoid"]', "task.holdout_classes=[8, 9]"])
    with pytest.raises(ConfigError, match="'sinusoid', 'omniglot'|omniglot"):
        config.load("lft/classification", ['task.sources=["svhn"]'])
    with pytest.raises(ConfigError, match="task.holdout_classes applies to task.family"):
        config.load("lft/uap", ["task.holdout_classes=[8, 9]"])
    with pytest.raises(ConfigError, match="is not one of \\['mnist', 'cifar10'\\]"):
        config.load("lft/uap", ['task.sources=["sinusoid"]'])


needs_omniglot = pytest.mark.skipif(not (SHARED / "omniglot").is_dir() or not (SHARED / "mnist").is_dir(),
                                    reason="shared Omniglot / MNIST data not present")


@needs_omniglot
def test_one_fine_tuner_meta_trains_sinusoid_and_image_families_together(tmp_path, monkeypatch):
    """The shipped fine-tuner's mixture: sinusoid regression (MSE, 1-40-40-1 MLP, shots x ways points) beside
    MNIST and Omniglot classification in one meta-batch; trains, and evaluates per source."""
    from innerloop.evaluate import evaluate_meta

    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    sets = ['task.sources=["sinusoid", "mnist", "omniglot"]', "task.holdout_classes=[7, 8, 9]", "model.hidden=[8]",
            "inner.steps=2", "train.truncation=2", "train.horizon=4", "train.meta_batch=6", "train.iterations=2",
            "train.log_every=1", "eval.tasks=3", "eval.steps=2", "eval.chunk=2"]
    cfg = config.load("tuners/default", sets)
    tasks, meta = build(cfg)
    batch = tasks.train_batch(12, 0, 0)
    assert set(batch) == {"sinusoid", "mnist", "omniglot"}
    xs, ys, xq, yq = batch["sinusoid"]
    assert xs.shape[1:] == (10, 1) and xq.shape[1:] == (30, 1)  # shots x ways, query x ways points
    assert meta.learners["sinusoid"].loss_name == "mse" and meta.learners["omniglot"].loss_name == "cross_entropy"
    assert tuple(meta.learners["sinusoid"].model.get_parameter("net.0.weight").shape) == (40, 1)
    meta.zero_grad()
    losses, _ = meta.meta_backward(batch)
    assert torch.isfinite(losses).all()
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["iterations"] == 2
    result = evaluate_meta(cfg, meta, tasks, sources=["sinusoid"])
    assert result["tasks"] == 3 and result["metric"] == "mse"
    ev = tasks.eval_set(3, 5, sources=["sinusoid"])
    assert ev["sinusoid"][2].shape == (3, 30, 1)  # eval_query x ways test points
