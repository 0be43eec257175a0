"""train_victim / load_victim / correctly_classified on real MNIST and CIFAR-10 (tiny runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from innerloop.data import load_dataset
from innerloop.errors import UserError
from innerloop.victims import correctly_classified, load_victim, predict, train_victim
from tests.victims.conftest import TINY, shared


def test_tiny_run_is_well_above_chance_and_writes_both_files(tiny_victim):
    result, out = tiny_victim
    assert result["reused"] is False
    assert result["test_accuracy"] > 0.6  # chance is 0.1; about 0.85 in practice
    assert result["test_images"] == 10000 and result["train_images"] == 2000
    metrics = json.loads((out / "victim.json").read_text())
    assert metrics["test_accuracy"] == result["test_accuracy"]
    assert metrics["image_shape"] == [1, 28, 28] and metrics["num_classes"] == 10
    assert (metrics["dataset"], metrics["epochs"], metrics["seed"]) == ("mnist", 2, 0)
    assert not list(out.glob("*.tmp"))


def test_checkpoint_round_trips_with_weights_only(tiny_victim):
    result, out = tiny_victim
    raw = torch.load(out / "victim.pt", map_location="cpu", weights_only=True)
    assert set(raw) == {"format", "state_dict", "meta"}
    for target in (out, out / "victim.pt"):
        model, meta = load_victim(target)
        assert not model.training
        assert all(not p.requires_grad for p in model.parameters())
        assert meta["test_accuracy"] == result["test_accuracy"]
        for k, v in model.state_dict().items():
            assert torch.equal(v, raw["state_dict"][k])
    test = load_dataset("mnist", shared("mnist"), "test")
    assert float((predict(model, test.images) == test.labels).mean()) == result["test_accuracy"]


def test_gradients_reach_the_input_of_a_frozen_victim(tiny_victim):
    model, _ = load_victim(tiny_victim[1])
    delta = torch.zeros(1, 1, 28, 28, requires_grad=True)
    model((torch.full((1, 1, 28, 28), 0.5) + delta).clamp(0, 1)).sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0


def test_second_call_reuses_the_checkpoint(tiny_victim):
    result, out = tiny_victim
    before = (out / "victim.pt").read_bytes()
    lines = []
    again = train_victim("mnist", "/nonexistent-data-is-not-read", out, log=lines.append, **TINY)
    assert again["reused"] is True and again["test_accuracy"] == result["test_accuracy"]
    assert (out / "victim.pt").read_bytes() == before
    assert len(lines) == 1 and lines[0].startswith("reusing the trained mnist victim")


def test_other_settings_are_refused_without_force_and_training_is_deterministic(tmp_path):
    root = shared("mnist")
    settings = {"epochs": 1, "limit": 300, "batch_size": 50, "log": None}
    first = train_victim("mnist", root, tmp_path / "a", seed=3, **settings)
    with pytest.raises(UserError, match="--force") as err:
        train_victim("mnist", root, tmp_path / "a", seed=4, **settings)
    assert "\n" not in str(err.value) and "seed=3" in str(err.value)
    again = train_victim("mnist", root, tmp_path / "b", seed=3, **settings)
    a, _ = load_victim(tmp_path / "a")
    b, _ = load_victim(tmp_path / "b")
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert again["test_accuracy"] == first["test_accuracy"]
    forced = train_victim("mnist", root, tmp_path / "a", seed=4, force=True, **settings)
    assert forced["reused"] is False and load_victim(tmp_path / "a")[1]["seed"] == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "unsafe"])
def test_a_bad_checkpoint_is_a_one_line_user_error(tiny_victim, tmp_path, damage):
    good = (tiny_victim[1] / "victim.pt").read_bytes()
    path = tmp_path / "victim.pt"
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    else:  # a pickled object that weights_only=True must refuse to build
        torch.save({"format": "innerloop-victim-1", "state_dict": {}, "meta": np.random.default_rng(0)}, path)
    for call in (lambda: train_victim("mnist", None, tmp_path, log=None), lambda: load_victim(tmp_path)):
        with pytest.raises(UserError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and "delete it or retrain with" in message and "--force" in message


def test_a_missing_checkpoint_and_a_missing_data_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no victim checkpoint"):
        load_victim(tmp_path)
    with pytest.raises(UserError, match="INNERLOOP_DATA"):
        train_victim("mnist", None, tmp_path, log=None)
    with pytest.raises(UserError, match="unknown victim dataset"):
        train_victim("svhn", None, tmp_path, log=None)


def test_correctly_classified_returns_the_indices_it_gets_right(tiny_victim):
    model, meta = load_victim(tiny_victim[1])
    test = load_dataset("mnist", shared("mnist"), "test")
    images, labels = test.images[:500], test.labels[:500]
    idx = correctly_classified(model, images, labels)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    pred = predict(model, images)
    assert np.array_equal(idx, np.flatnonzero(pred == labels))
    assert np.array_equal(correctly_classified(model, torch.from_numpy(images.copy()), torch.from_numpy(labels)), idx)
    with pytest.raises(UserError, match="labels"):
        correctly_classified(model, images, labels[:10])
    with pytest.raises(UserError, match="uint8"):
        correctly_classified(model, images.astype(np.float32), labels)


def test_cifar10_victim_trains_with_augmentation(tmp_path):
    result = train_victim("cifar10", shared("cifar10").parent, tmp_path, epochs=1, limit=256, log=None)
    assert result["image_shape"] == [3, 32, 32] and result["test_images"] == 1000
    assert result["recipe"]["augment"] is True and result["train_images"] == 256
    model, meta = load_victim(tmp_path)
    assert model.conv1.in_channels == 3 and meta["dataset"] == "cifar10"
