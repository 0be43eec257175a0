"""``innerloop predict RUN --support DIR --query DIR``: classify your own images with a trained few-shot run.

The run adapts to a support set given as a class-per-folder tree (``DIR/<class>/<image>``, as many class
folders as the run's ``task.ways``; the sorted folder names are labels 0 .. ways-1) and then labels the query
images: a flat folder (``DIR/<image>``), or a class-per-folder tree whose folder names are then the true labels,
and the accuracy is reported too. Images are prepared exactly as the run's training images were
(:func:`innerloop.data.preprocess.preprocess_batch_for`). No dataset is read.

Output: one line per query image, ``<file>\\t<predicted class>\\t<probability>`` (``file`` relative to the query
folder, ``probability`` the softmax of the predicted class), then ``accuracy: ...`` for a labelled query tree;
with ``--json`` one JSON object instead.

The query images are classified together, as one batch: a run trained with transductive batch norm (the MAML
default, ``model.norm = "batch"``) normalizes each layer with the statistics of that batch, as in training and
``innerloop eval``, so a query set of a few images from the support classes gives the most faithful answers.
Every mistake is a one-line :class:`~innerloop.errors.UserError` (exit 2), found before the run is loaded where
it can be.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from innerloop.data.imaging import IMAGE_EXTENSIONS
from innerloop.errors import UserError


@dataclass
class ImageSet:
    """Image files and, for a class-per-folder tree, each file's class (folder) name."""

    root: Path
    files: list[Path]
    labels: list[str] | None


def _images_in(directory: Path) -> list[Path]:
    """The image files directly in ``directory`` (known extensions, hidden files skipped), sorted by name."""
    return sorted(Path(e.path) for e in os.scandir(directory)
                  if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS))


def _subfolders(directory: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def _folder(path: str, flag: str) -> Path:
    directory = Path(path).expanduser()
    if not directory.exists():
        raise UserError(f"{flag} {path}: no such folder")
    if not directory.is_dir():
        raise UserError(f"{flag} {path} is a file: give the folder holding the images")
    return directory


def support_set(path: str) -> ImageSet:
    """The ``--support`` tree ``DIR/<class>/<image>``: every class folder must hold at least one image."""
    directory = _folder(path, "--support")
    classes = _subfolders(directory)
    if not classes:
        raise UserError(f"--support {path} has no class folders: put each class's images in {path}/<class>/")
    files, labels = [], []
    for name in classes:
        images = _images_in(directory / name)
        if not images:
            raise UserError(f"--support class folder {directory / name} holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)}): add at least one, or remove the folder")
        files += images
        labels += [name] * len(images)
    return ImageSet(directory, files, labels)


def query_set(path: str) -> ImageSet:
    """The ``--query`` folder: images directly in it, or (then labelled) in class folders ``DIR/<class>/``."""
    directory = _folder(path, "--query")
    flat = _images_in(directory)
    tree = {name: _images_in(directory / name) for name in _subfolders(directory)}
    tree = {name: images for name, images in tree.items() if images}
    if flat and tree:
        raise UserError(f"--query {path} holds images and class folders with images ({', '.join(list(tree)[:3])}): "
                        "use one layout, DIR/<image> or DIR/<class>/<image>")
    if flat:
        return ImageSet(directory, flat, None)
    if not tree:
        raise UserError(f"--query {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}): put the images to "
                        f"classify in it, or in {path}/<class>/ to also get the accuracy")
    return ImageSet(directory, [f for images in tree.values() for f in images],
                    [name for name, images in tree.items() for _ in images])


def _run_config(run_dir: str):
    """The run's config, read without loading its checkpoint; UserError unless it classifies images."""
    from innerloop.data.preprocess import settings_for
    from innerloop.errors import ConfigError
    from innerloop.train import _read_config

    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise UserError(f"no run directory at {run_dir}: train one first ('innerloop train CONFIG --out {run_dir}')")
    cfg = _read_config(run)
    try:
        settings_for(cfg)
    except ConfigError:
        raise UserError(f"{run_dir} is a {cfg.task.family!r} run, not an image-classification run: predict takes "
                        "a run trained with task.family = 'episodes' (e.g. the omniglot or miniimagenet configs)"
                        ) from None
    return cfg


def predict(run_dir: str, support: str, query: str, steps: int | None = None) -> dict[str, Any]:
    """Adapt the run in ``run_dir`` to the ``support`` tree and classify the ``query`` images.

    Returns ``{"run", "classes", "steps", "predictions": [{"file", "prediction", "probability"[, "label"]}]
    [, "accuracy"]}`` (accuracy for a labelled query tree).
    """
    import torch

    import innerloop
    from innerloop.data.preprocess import preprocess_batch_for

    if steps is not None and steps < 0:
        raise UserError(f"--steps {steps} must be >= 0 (0 classifies with the run's initialisation)")
    cfg = _run_config(run_dir)
    sup, qry = support_set(support), query_set(query)
    classes = sorted(set(sup.labels or []))
    if len(classes) != cfg.task.ways:
        raise UserError(f"--support {support} has {len(classes)} class folders but the run classifies "
                        f"{cfg.task.ways} ways: give it exactly {cfg.task.ways} class folders")
    unknown = sorted(set(qry.labels or []) - set(classes))
    if unknown:
        raise UserError(f"--query class folder {unknown[0]!r} is not a support class ({', '.join(classes)}): name "
                        "query folders after support classes, or put the query images directly in the folder")
    meta = innerloop.load(run_dir)
    xs = preprocess_batch_for(meta, sup.files, what=[str(f) for f in sup.files])
    xq = preprocess_batch_for(meta, qry.files, what=[str(f) for f in qry.files])
    ys = torch.tensor([classes.index(name) for name in sup.labels or []], dtype=torch.int64)
    adapted = meta.adapt(xs, ys, steps=steps)
    ref = next(iter(adapted.params.values()))
    probs = torch.softmax(adapted.predict(xq.to(ref.device, ref.dtype)).double(), dim=-1).cpu()
    best, index = probs.max(dim=-1)
    predictions = []
    for i, path in enumerate(qry.files):
        row: dict[str, Any] = {"file": path.relative_to(qry.root).as_posix(), "prediction": classes[int(index[i])],
                               "probability": round(float(best[i]), 6)}
        if qry.labels is not None:
            row["label"] = qry.labels[i]
        predictions.append(row)
    result: dict[str, Any] = {"run": str(run_dir), "classes": classes, "steps": adapted.steps,
                              "predictions": predictions}
    if qry.labels is not None:
        result["accuracy"] = sum(r["prediction"] == r["label"] for r in predictions) / len(predictions)
    return result


def format_text(result: dict[str, Any]) -> str:
    """``file\\tprediction\\tprobability`` lines, then ``accuracy: A (k/n correct)`` when the labels are known."""
    lines = [f"{r['file']}\t{r['prediction']}\t{r['probability']:.4f}" for r in result["predictions"]]
    if "accuracy" in result:
        n = len(result["predictions"])
        correct = sum(r["prediction"] == r["label"] for r in result["predictions"])
        lines.append(f"accuracy: {result['accuracy']:.4f} ({correct}/{n} correct)")
    return "\n".join(lines)


def run_predict(args: argparse.Namespace) -> str:
    """``innerloop predict``: what to print (text lines, or one JSON object with ``--json``)."""
    result = predict(args.run_dir, args.support, args.query, args.steps)
    return json.dumps(result) if args.json else format_text(result)
