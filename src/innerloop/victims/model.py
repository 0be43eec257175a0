"""Loading a trained victim and querying it.

Input convention (shared by training and every attack): the victim takes float32 ``[N, C, H, W]``
images with pixels in ``[0, 1]`` (uint8 / 255) and has **no normalisation layer**, so an
attacker's ``clamp(x + delta, 0, 1)`` is exactly what the network sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from innerloop import checkpoint
from innerloop.errors import UserError
from innerloop.models import LeNet5

FILENAME = "victim.pt"
FORMAT = "innerloop-victim-1"


def build_model(image_shape: list[int] | tuple[int, ...], num_classes: int) -> nn.Module:
    """An untrained LeNet-5 for images of shape ``(C, H, W)`` (H == W)."""
    c, h, w = (int(s) for s in image_shape)
    if h != w:
        raise UserError(f"LeNet-5 victims need square images, got {h}x{w}")
    return LeNet5(in_channels=c, num_classes=int(num_classes), image_size=h)


def to_unit(images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` images as float32 in ``[0, 1]`` on ``device`` (the victim's input)."""
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise UserError(f"expected uint8 images, got {images.dtype}; pass the dataset's raw pixel array")
        return images.to(device=device, dtype=torch.float32).div_(255.0)
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise UserError(f"expected uint8 images, got {arr.dtype}; pass the dataset's raw pixel array")
    return torch.from_numpy(arr.astype(np.float32)).div_(255.0).to(device)  # astype copies: read-only caches are fine


def victim_path(path_or_dir: str | Path) -> Path:
    """``path_or_dir`` itself, or ``path_or_dir/victim.pt`` when it is a folder."""
    p = Path(path_or_dir).expanduser()
    return p / FILENAME if p.is_dir() else p


def read_checkpoint(path: Path, fix: str) -> dict[str, Any]:
    """The ``{"format", "state_dict", "meta"}`` dict in ``path`` (``weights_only=True``).

    A missing file, or a corrupt or foreign one (its error ends in ``fix``), raises a one-line
    :class:`UserError`.
    """
    if not path.is_file():
        raise UserError(f"no victim checkpoint at {path}; train one with "
                        f"'innerloop victim train --dataset mnist|cifar10 --out {path.parent}'")
    try:
        state = checkpoint.load(path)
    except Exception:  # checkpoint.load's UserError, or an unpickler error it does not map (e.g. struct.error)
        raise UserError(f"victim checkpoint {path} is corrupt or unreadable; {fix}") from None
    if (not isinstance(state, dict) or state.get("format") != FORMAT
            or not isinstance(state.get("state_dict"), dict) or not isinstance(state.get("meta"), dict)):
        raise UserError(f"{path} is not an innerloop victim checkpoint; {fix}")
    meta = state["meta"]
    for key in ("dataset", "image_shape", "num_classes", "seed", "epochs"):
        if key not in meta:
            raise UserError(f"victim checkpoint {path} lacks metadata {key!r}; {fix}")
    return state


def _retrain_fix(meta: dict[str, Any] | None = None) -> str:
    dataset = (meta or {}).get("dataset", "DATASET")
    return f"delete it or retrain with 'innerloop victim train --dataset {dataset} --force'"


def load_victim(path_or_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The trained victim in ``path_or_dir`` (a ``victim.pt`` or its folder) and its metadata.

    The model is in eval mode with ``requires_grad`` off on every parameter (gradients still flow
    to the *input*, which is what a white-box attack needs). Loaded with ``weights_only=True``.
    """
    path = victim_path(path_or_dir)
    state = read_checkpoint(path, _retrain_fix())
    meta = dict(state["meta"])
    model = build_model(meta["image_shape"], meta["num_classes"])
    try:
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"victim checkpoint {path} does not fit LeNet-5 ({first}); {_retrain_fix(meta)}") from None
    model.eval().requires_grad_(False)
    return model.to(device), meta


@torch.no_grad()
def predict(model: nn.Module, images_uint8: np.ndarray | torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Top-1 class of each uint8 image, as an int64 array (the model is evaluated in eval mode)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images_uint8), batch_size):
        x = to_unit(images_uint8[start:start + batch_size], device)
        out.append(model(x).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, images_uint8: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Fraction of images whose top-1 class equals the label."""
    labels = np.asarray(labels)
    return float((predict(model, images_uint8) == labels).mean()) if len(labels) else float("nan")


def correctly_classified(model: nn.Module, images_uint8: np.ndarray | torch.Tensor,
                         labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Sorted int64 indices of the images the victim classifies correctly (the attack's pool)."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if len(labels) != len(images_uint8):
        raise UserError(f"{len(images_uint8)} images but {len(labels)} labels; pass matching arrays")
    return np.flatnonzero(predict(model, images_uint8) == labels).astype(np.int64)
