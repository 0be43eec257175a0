"""Training the LeNet-5 victims of LFT's universal-perturbation experiment (spec section 12).

One model per dataset, trained on the real data:

* MNIST: the full 60,000-image training set, Adam, no augmentation.
* CIFAR-10: the 4,000-image training subset that is available offline, SGD with momentum, weight
  decay and light augmentation (random crop after 4-pixel zero padding, horizontal flip).

Both use a cosine learning-rate decay over all steps. Pixels are scaled to ``[0, 1]`` and the
network has no normalisation layer, so an attacker's ``clamp(x + delta, 0, 1)`` is the input
(see :mod:`innerloop.victims.model`). Test accuracy is measured on the held-out test images
(MNIST 10,000; CIFAR-10 the 1,000 available). Runs are seeded and deterministic on CPU.

The result is ``victim.pt`` (state_dict + metadata, written atomically, read with
``weights_only=True``) and ``victim.json`` (the metrics) in ``out_dir``. A matching ``victim.pt``
is reused instead of retrained.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from innerloop import checkpoint
from innerloop.errors import ConfigError, UserError
from innerloop.victims.augment import augment
from innerloop.victims.model import FILENAME, FORMAT, accuracy, build_model, read_checkpoint, to_unit

METRICS = "victim.json"


@dataclass(frozen=True)
class Recipe:
    """Optimiser settings of one dataset's victim."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str  # "adam" | "sgd" (SGD uses Nesterov momentum 0.9)
    weight_decay: float = 0.0
    augment: bool = False  # random crop (pad 4) + horizontal flip


#: Defaults per dataset (what ``innerloop victim train`` uses).
RECIPES: dict[str, Recipe] = {
    "mnist": Recipe(epochs=6, batch_size=128, lr=2e-3, optimizer="adam"),
    "cifar10": Recipe(epochs=120, batch_size=64, lr=0.02, optimizer="sgd", weight_decay=5e-4, augment=True),
}

#: Settings that must match for an existing ``victim.pt`` to be reused.
_REQUEST_KEYS = ("dataset", "seed", "epochs", "limit", "batch_size", "lr")


def stderr_log(message: str) -> None:
    """Print a progress line to stderr (stdout stays free for the CLI's JSON line)."""
    print(message, file=sys.stderr, flush=True)


def resolve_data_root(dataset: str, data_root: str | Path | None) -> Path:
    """The folder holding ``dataset``'s files.

    ``data_root`` may be that folder itself or its parent (the folder holding ``mnist/`` and
    ``cifar10/``); ``None`` means ``$INNERLOOP_DATA/<dataset>``.
    """
    if data_root is None or str(data_root) == "":
        env = os.environ.get("INNERLOOP_DATA", "")
        if not env:
            raise UserError("no data folder: pass --data DIR (the folder holding mnist/ and cifar10/) "
                            "or set INNERLOOP_DATA")
        data_root = env
    root = Path(data_root).expanduser()
    return root / dataset if (root / dataset).is_dir() else root


def _load_split(dataset: str, root: Path, split: str):
    from innerloop.data import load_dataset

    return load_dataset(dataset, root, split)


def _optimizer(recipe: Recipe, lr: float, params) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay)


def _fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, epochs: int, batch_size: int,
         lr: float, generator: torch.Generator, log: Callable[[str], None], tag: str) -> list[dict[str, float]]:
    """Minibatch training with cosine LR decay; per-epoch mean loss and training accuracy."""
    opt = _optimizer(recipe, lr, model.parameters())
    n = len(y)
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(1, epochs * steps_per_epoch)
    history = []
    step = 0
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        loss_sum, correct = 0.0, 0
        start = time.perf_counter()
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            if recipe.augment:
                xb = augment(xb, generator)
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_accuracy": correct / n}
        history.append(row)
        log(f"{tag} epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.4f}, "
            f"train accuracy {row['train_accuracy']:.4f} ({time.perf_counter() - start:.1f} s)")
    model.eval()
    return history


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _metrics(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k != "class_names"}


def _reuse(path: Path, request: dict[str, Any], dataset: str) -> dict[str, Any]:
    fix = f"delete it or retrain with 'innerloop victim train --dataset {dataset} --force'"
    meta = read_checkpoint(path, fix)["meta"]
    differs = [k for k in _REQUEST_KEYS if meta.get(k) != request[k]]
    if differs:
        have = ", ".join(f"{k}={meta.get(k)!r}" for k in differs)
        want = ", ".join(f"{k}={request[k]!r}" for k in differs)
        raise UserError(f"{path} was trained with {have}, not {want}; pass --force (force=True) to replace it "
                        f"or choose another --out")
    return meta


def train_victim(
    dataset: str,
    data_root: str | Path | None,
    out_dir: str | Path,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int | None = None,
    lr: float | None = None,
    *,
    limit: int | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = stderr_log,
) -> dict[str, Any]:
    """Train (or reuse) the LeNet-5 victim of ``dataset`` ("mnist" or "cifar10"); return its metrics.

    ``data_root``: the dataset folder or its parent (``None``: ``$INNERLOOP_DATA``). ``epochs``,
    ``batch_size``, ``lr``: ``None`` takes :data:`RECIPES`' default. ``limit`` trains on the first
    ``limit`` training images only (quick checks); the test set is always complete. An existing
    ``out_dir/victim.pt`` with the same dataset, seed, epochs, limit, batch size and lr is loaded
    and reused (``"reused": True`` in the result); one with other settings is a UserError unless
    ``force``, which retrains and replaces it. ``log`` gets progress lines (default: stderr).
    """
    if dataset not in RECIPES:
        raise ConfigError(f"unknown victim dataset {dataset!r}: use one of {', '.join(RECIPES)}")
    recipe = RECIPES[dataset]
    epochs = recipe.epochs if epochs is None else int(epochs)
    batch_size = recipe.batch_size if batch_size is None else int(batch_size)
    lr = recipe.lr if lr is None else float(lr)
    if epochs < 1 or batch_size < 1 or not lr > 0 or (limit is not None and limit < 1):
        raise ConfigError(f"epochs ({epochs}), batch size ({batch_size}), lr ({lr}) and limit ({limit}) "
                          f"must be positive")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    log = log or (lambda message: None)
    out = Path(out_dir).expanduser()
    path = out / FILENAME
    request = {"dataset": dataset, "seed": int(seed), "epochs": epochs, "limit": limit,
               "batch_size": batch_size, "lr": lr}

    if path.exists() and not force:
        meta = _reuse(path, request, dataset)
        if not (out / METRICS).is_file():
            _write_json(out / METRICS, _metrics(meta))
        log(f"reusing the trained {dataset} victim in {path} (test accuracy {meta['test_accuracy']:.4f}); "
            f"pass --force to retrain")
        return {**_metrics(meta), "path": str(path.resolve()), "reused": True}

    root = resolve_data_root(dataset, data_root)
    start = time.perf_counter()
    train, test = _load_split(dataset, root, "train"), _load_split(dataset, root, "test")
    images, labels = train.images, train.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    image_shape = [int(s) for s in train.images.shape[1:]]
    num_classes = train.num_classes

    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_model(image_shape, num_classes)
    model.to(device)
    x = to_unit(images, device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=device)
    history = _fit(model, x, y, recipe, epochs, batch_size, lr, generator, log, dataset)
    model.cpu()
    test_acc = accuracy(model, test.images, test.labels)
    seconds = time.perf_counter() - start

    meta: dict[str, Any] = {
        **request,
        "arch": "lenet5",
        "test_accuracy": test_acc,
        "test_images": int(len(test.labels)),
        "train_images": int(len(labels)),
        "final_train_loss": history[-1]["train_loss"],
        "final_train_accuracy": history[-1]["train_accuracy"],
        "image_shape": image_shape,
        "num_classes": int(num_classes),
        "class_names": list(train.class_names),
        "input": "float32 NCHW, pixels uint8/255 in [0, 1], no normalisation",
        "recipe": {**asdict(recipe), "epochs": epochs, "batch_size": batch_size, "lr": lr},
        "schedule": "cosine decay to 0 over all steps",
        "device": str(device),
        "seconds": round(seconds, 2),
        "torch": str(torch.__version__),
        "history": history,
    }
    out.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
             "meta": meta}
    checkpoint.save(path, state)
    _write_json(out / METRICS, _metrics(meta))
    log(f"{dataset} victim: test accuracy {test_acc:.4f} on {len(test.labels)} images, {seconds:.1f} s -> {path}")
    return {**_metrics(meta), "path": str(path.resolve()), "reused": False}
