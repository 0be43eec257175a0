"""Training checkpoints: complete state, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import struct
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from innerloop.errors import UserError

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": repr(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    import ast

    py = ast.literal_eval(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))


def non_finite(state: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a nested dict/list that hold NaN or infinity."""
    if isinstance(state, torch.Tensor):
        return [prefix or "tensor"] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in non_finite(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(state, (list, tuple)):
        return [n for i, v in enumerate(state) for n in non_finite(v, f"{prefix}[{i}]")]
    return []


def atomic_write(path: Path, write) -> None:
    """``write(file)`` into a temporary file unique to this writer, fsync, then rename over ``path``: a crash or a
    full disk never leaves a half-written file, and the temporary file is removed on any failure."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (:func:`atomic_write`), and only a fully finite state: a checkpoint on disk always holds
    finite numbers (:class:`ValueError` names the offending tensors otherwise; the old checkpoint stays)."""
    bad = non_finite(state)
    if bad:
        raise ValueError(f"not writing a checkpoint with non-finite values in {', '.join(bad[:3])}")
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely; a missing or corrupt file raises a one-line :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: train first with 'innerloop train CONFIG --out {path.parent}'")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, struct.error) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"checkpoint {path} is corrupt or unreadable ({first[:120]}); delete it and retrain, or restore a copy"
        ) from None
