"""Runs a per-task function over a batch of tasks: ``torch.func.vmap`` or a per-task loop.

Both paths call the same per-task function, so they compute the same losses and meta-gradients.
The loop backpropagates each task on its own (peak memory of one task's graph); vmap runs one
batched graph (far fewer kernel launches, more memory).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from innerloop.engine.learner import Learner
from innerloop.errors import ConfigError

MODES = ("auto", "vmap", "loop")


def choose_mode(learner: Learner, device: torch.device | str, requested: str = "auto") -> str:
    """Pick the executor for a workload.

    * built-in fused norm layers -> loop (their second-order meta-gradient is wrong under vmap);
    * on a GPU -> vmap;
    * on CPU, convolutional learners -> loop (measured: vmap turns per-task convs into grouped
      convolutions, ~2x slower and ~10x the memory), everything else -> vmap (~8x faster on
      overhead-bound MLPs).
    """
    if requested not in MODES:
        raise ConfigError(f"train.executor = {requested!r} is not one of {list(MODES)}")
    if requested == "vmap" and learner.has_builtin_norm:
        raise ConfigError(
            "vmap with a built-in BatchNorm/LayerNorm/GroupNorm gives a wrong second-order meta-gradient "
            "(functorch#534): use innerloop.models.BatchNorm or set train.executor = 'loop'"
        )
    if requested != "auto":
        return requested
    if learner.has_builtin_norm:
        return "loop"
    if torch.device(device).type == "cuda":
        return "vmap"
    return "loop" if learner.has_conv else "vmap"


def is_ragged(batch) -> bool:
    """A list of per-task tuples (tasks that cannot be stacked) rather than a tuple of stacked tensors."""
    return isinstance(batch, list) and len(batch) > 0 and isinstance(batch[0], (tuple, list))


def map_tasks(
    fn: Callable[..., tuple[Tensor, dict[str, Tensor]]],
    tensors: Sequence[Tensor],
    mode: str,
    backward: bool = False,
    scale: float = 1.0,
    chunk: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Apply ``fn`` to each task (slice along dim 0) of ``tensors``, or to each tuple of a ragged list.

    ``fn`` returns ``(scalar, aux)``. With ``backward``, ``scale * sum(scalars)`` is backpropagated
    (into the ``.grad`` of whatever meta-parameters ``fn`` closes over). Returns detached scalars
    ``[B]`` and aux stacked along a task dimension.
    """
    if is_ragged(tensors):  # tasks that cannot be stacked always run on the loop
        mode, per_task = "loop", list(tensors)
    else:
        per_task = None
    n = len(per_task) if per_task is not None else tensors[0].shape[0]
    outs: list[Tensor] = []
    auxes: list[dict[str, Tensor]] = []
    if mode == "vmap":
        size = chunk or n
        for s in range(0, n, size):
            part = [t[s : s + size] for t in tensors]
            value, aux = torch.vmap(fn, randomness="different")(*part)
            if backward:
                (value.sum() * scale).backward()
            outs.append(value.detach())
            auxes.append(aux)
        aux = {k: torch.cat([a[k] for a in auxes]) for k in auxes[0]} if auxes else {}
        return torch.cat(outs), aux
    if mode == "loop":
        for i in range(n):
            value, aux = fn(*(per_task[i] if per_task is not None else (t[i] for t in tensors)))
            if backward:
                (value * scale).backward()
            outs.append(value.detach())
            auxes.append({k: v.detach() for k, v in aux.items()})
        aux = {k: torch.stack([a[k] for a in auxes]) for k in auxes[0]} if auxes else {}
        return torch.stack(outs), aux
    raise ValueError(f"mode must be 'vmap' or 'loop', got {mode!r}")
