"""Runs a per-task function over a batch of tasks: ``torch.func.vmap`` or a per-task loop.

Both paths call the same per-task function, so they compute the same losses and meta-gradients.
The loop backpropagates each task on its own (peak memory of one task's graph); vmap runs one
batched graph (far fewer kernel launches, more memory).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from innerloop.engine.learner import Learner
from innerloop.errors import ConfigError

MODES = ("auto", "vmap", "loop")


#: above this many adapted coordinates per task, a coordinate-wise rule (the LSTM fine-tuner) runs
#: faster in the loop on CPU: measured 2.8x (784-128-64-2 MLP, 109k) and 1.7x (4-conv CNN, 29k) slower
#: under vmap, 1.2-1.4x faster on the 1.7k-parameter sinusoid MLP.
COORDINATEWISE_VMAP_LIMIT = 10_000


def choose_mode(learner: Learner, device: torch.device | str, requested: str = "auto",
                coordinatewise: bool = False) -> str:
    """Pick the executor for a workload.

    * built-in fused norm layers -> loop (their second-order meta-gradient is wrong under vmap when
      their affine parameters are per-task, functorch#534);
    * on a GPU -> vmap;
    * on CPU, convolutional learners -> loop (measured: vmap turns per-task convs into grouped
      convolutions, ~2x slower and ~6-9x the memory), everything else -> vmap (~11x faster on
      overhead-bound MLPs), except coordinate-wise rules on more than
      :data:`COORDINATEWISE_VMAP_LIMIT` coordinates -> loop (memory-bound: vmap is slower).
    """
    if requested not in MODES:
        raise ConfigError(f"train.executor = {requested!r} is not one of {list(MODES)}")
    if requested == "vmap" and learner.has_builtin_norm:
        raise ConfigError(
            "vmap with a built-in BatchNorm/LayerNorm/GroupNorm gives a wrong second-order meta-gradient "
            "(functorch#534): convert the model with innerloop.models.convert_norm(model) (BatchNorm layers) or "
            "use innerloop.models.BatchNorm, or set train.executor = 'loop'"
        )
    if requested != "auto":
        return requested
    if learner.has_builtin_norm:
        return "loop"
    if torch.device(device).type == "cuda":
        return "vmap"
    if coordinatewise and learner.num_inner > COORDINATEWISE_VMAP_LIMIT:
        return "loop"
    return "loop" if learner.has_conv else "vmap"


def index_tree(tree: Any, i: int | slice) -> Any:
    """``tree[i]`` for every tensor of a nested dict/tuple/list (None stays None)."""
    if tree is None:
        return None
    if isinstance(tree, Tensor):
        return tree[i]
    if isinstance(tree, dict):
        return {k: index_tree(v, i) for k, v in tree.items()}
    if hasattr(tree, "_fields"):  # a NamedTuple (Task, TaskBatch): fields are positional
        return type(tree)(*(index_tree(v, i) for v in tree))
    return type(tree)(index_tree(v, i) for v in tree)


def stack_trees(trees: list[Any], cat: bool = False, ragged: bool = False) -> Any:
    """Stack (or concatenate) a list of identically structured nested dicts/tuples of tensors.

    ``ragged=True``: a leaf whose tensors differ in shape (per-task query outputs of unequal episodes) stays a
    list of tensors instead of failing to stack."""
    first = trees[0]
    if first is None:
        return None
    if isinstance(first, Tensor):
        if ragged and any(t.shape != first.shape for t in trees):
            return list(trees)
        return torch.cat(trees) if cat else torch.stack(trees)
    if isinstance(first, dict):
        return {k: stack_trees([t[k] for t in trees], cat, ragged) for k in first}
    return type(first)(stack_trees([t[i] for t in trees], cat, ragged) for i in range(len(first)))


def detach_tree(tree: Any) -> Any:
    if tree is None:
        return None
    if isinstance(tree, Tensor):
        return tree.detach()
    if isinstance(tree, dict):
        return {k: detach_tree(v) for k, v in tree.items()}
    return type(tree)(detach_tree(v) for v in tree)


def is_ragged(batch) -> bool:
    """A list of per-task tuples (tasks that cannot be stacked) rather than a tuple of stacked tensors."""
    return isinstance(batch, list) and len(batch) > 0 and isinstance(batch[0], (tuple, list))


def map_tasks(
    fn: Callable[..., tuple],
    args: Sequence[Any],
    mode: str,
    n: int,
    backward: bool = False,
    scale: float = 1.0,
    chunk: int | None = None,
    compile: bool = False,
    workers: int = 1,
    wrt: Sequence[Tensor] = (),
    replicate: Callable[[], None] | None = None,
) -> tuple:
    """Apply ``fn`` to each of ``n`` tasks: ``args`` are pytrees with a leading task dimension, or
    None (passed through unbatched).

    ``fn`` returns a tuple whose first entry is a scalar; with ``backward``, ``scale * sum`` of the
    scalars is backpropagated (into the ``.grad`` of whatever meta-parameters ``fn`` closes over).
    Returns the outputs, detached, stacked along a task dimension. ``compile`` runs the vmapped function
    through ``torch.compile`` (vmap mode only). ``workers`` > 1 runs the loop's tasks in that many threads
    (see :func:`loop_parallel`; ``wrt`` are then the meta-parameters to differentiate, ``replicate`` prepares
    each worker thread).
    """
    outs = []
    if mode == "vmap":
        size = chunk or n
        for s in range(0, n, size):
            part = index_tree(list(args), slice(s, s + size))
            in_dims = tuple(None if a is None else 0 for a in part)
            vfn = torch.vmap(fn, in_dims=in_dims, randomness="different")
            out = (torch.compile(vfn) if compile else vfn)(*part)
            if backward:
                (out[0].sum() * scale).backward()
            outs.append(detach_tree(out))
        return stack_trees(outs, cat=True)
    if mode == "loop" and workers > 1 and n > 1:
        return loop_parallel(fn, args, n, workers, backward, scale, wrt, replicate)
    if mode == "loop":
        for i in range(n):
            out = fn(*index_tree(list(args), i))
            if backward:
                (out[0] * scale).backward()
            outs.append(detach_tree(out))
        return stack_trees(outs)
    raise ValueError(f"mode must be 'vmap' or 'loop', got {mode!r}")


def loop_parallel(fn: Callable[..., tuple], args: Sequence[Any], n: int, workers: int, backward: bool, scale: float,
                  wrt: Sequence[Tensor], replicate: Callable[[], None] | None = None) -> tuple:
    """The per-task loop with tasks spread over ``workers`` threads, each running PyTorch ops single-threaded.

    On CPU a conv net's per-task kernels are too small for intra-op threads to scale (measured 1.3x from 1 to 2
    threads); whole tasks in parallel threads (PyTorch releases the GIL inside kernels) use the cores instead.
    Each worker takes ``torch.autograd.grad`` of its tasks' scaled losses with respect to ``wrt``; the main
    thread then adds the per-task gradients into ``.grad`` in task order, exactly as the sequential loop's
    per-task ``.backward()`` calls accumulate them, so the result does not depend on thread timing. Grad mode
    (thread-local in PyTorch) is carried into the workers. Every random draw must happen before: per-task
    inits are sampled up front; a random oracle is refused by :class:`~innerloop.engine.MetaLearner`.
    ``replicate()`` runs first in each worker: modules called through ``functional_call`` must not be shared
    between threads (:meth:`~innerloop.engine.Learner.use_replica`).
    """
    outs: list[Any] = [None] * n
    grads: list[Any] = [None] * n
    grad_mode = torch.is_grad_enabled()
    wrt = list(wrt)

    def work(w: int) -> None:
        if replicate is not None:
            replicate()
        with torch.set_grad_enabled(grad_mode):
            for i in range(w, n, workers):
                out = fn(*index_tree(list(args), i))
                if backward:
                    grads[i] = torch.autograd.grad(out[0] * scale, wrt, allow_unused=True) if wrt else ()
                outs[i] = detach_tree(out)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=min(workers, n), thread_name_prefix="innerloop-task") as pool:
            for f in [pool.submit(work, w) for w in range(min(workers, n))]:
                f.result()  # re-raises a worker's exception here
    finally:
        torch.set_num_threads(threads)
    if backward:
        with torch.no_grad():
            for task_grads in grads:
                for p, g in zip(wrt, task_grads):
                    if g is not None:
                        if p.grad is None:
                            p.grad = g
                        else:
                            p.grad += g
    return stack_trees(outs)


def map_ragged(fn: Callable[..., tuple], tasks: list[tuple], backward: bool = False, scale: float = 1.0) -> tuple:
    """The per-task loop over tasks that cannot be stacked (different shapes); per-task results of unequal
    shapes come back as lists."""
    outs = []
    for task in tasks:
        out = fn(*task)
        if backward:
            (out[0] * scale).backward()
        outs.append(detach_tree(out))
    return stack_trees(outs, ragged=True)
