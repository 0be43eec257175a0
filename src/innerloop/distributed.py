"""Data-parallel meta-training over tasks with explicit collectives (``torchrun``; gloo on CPU, NCCL on CUDA).

No DDP: DDP synchronises only gradients accumulated by ``.backward()`` hooks and knows nothing of the
``torch.func`` / ``autograd.grad`` inner loops. Instead each meta-batch of ``B`` tasks is drawn whole on every
rank (the single-process task stream, unchanged) and split into contiguous shards,
``lo_r = floor(B r / W)``, ``hi_r = floor(B (r + 1) / W)``; rank ``r`` backpropagates its tasks with the scale
``1 / B``, so that

    g = sum_r sum_{j in shard r} (1 / B) grad L_j  =  (1 / B) sum_j grad L_j,

the single-process mean, is one ``all_reduce(SUM)`` of one flat buffer (exact for uneven shards; a rank with no
task contributes zeros and still joins). The same buffer carries the per-task losses (each written at its
global index, zeros elsewhere: the sum reproduces the single-process loss vector bit for bit), a has-gradient
mask per meta-parameter (so a parameter the single process leaves without ``.grad`` stays without one: Adam
then skips it exactly as there) and the count of ranks that saw a non-finite value (all ranks skip together).
Every rank then takes the identical optimiser step; only rank 0 writes the run directory.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from innerloop.errors import UserError


class PeerFailed(UserError):
    """This process stopped because another process of the job failed (that one reports the cause)."""


class PeerLost(UserError):
    """A collective failed: another process of the job is gone (crashed, killed) or stopped answering."""


#: where a launcher that reports its failed processes itself (``innerloop ... --nproc``) tells its processes so
REPORTED_BY_LAUNCHER = "INNERLOOP_LAUNCHER_REPORTS"
#: how long a collective waits for a silent peer before failing, in seconds (``$INNERLOOP_COLLECTIVE_TIMEOUT``)
TIMEOUT_ENV = "INNERLOOP_COLLECTIVE_TIMEOUT"


def timeout_s() -> float:
    """``$INNERLOOP_COLLECTIVE_TIMEOUT`` (default 300 s): a rank that stops answering fails the others after it."""
    text = os.environ.get(TIMEOUT_ENV, "300")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1e7:
        raise UserError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds > 0 (default 300)")
    return value
_MARKS = ("gloo/transport", "Connection reset by peer", "Connection closed by peer", "ProcessGroupNCCL", "NCCL error",
          "Timed out", "timed out", "Socket Timeout", "Broken pipe")


def collective_failure(e: BaseException) -> bool:
    """Whether ``e`` is a collective that failed because a peer is gone or silent (gloo / NCCL / store errors)."""
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    return isinstance(e, RuntimeError) and any(m in str(e) for m in _MARKS)


def lost(e: BaseException, world: "World", consequence: str) -> PeerLost:
    """The one-line error of a process whose peer is gone: what happened, and ``consequence`` (what is kept)."""
    import re

    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    first = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", first)[:140]  # drop the C++ source location
    return PeerLost(f"process rank {world.rank} of {world.size} lost another process of this job (it crashed, was "
                    f"killed, or did not answer for {timeout_s():.0f} s: its own error or the launcher names it; here: "
                    f"{first}); {consequence}")


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` (1 = a plain single-process run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """Tasks ``lo .. hi-1`` of ``n`` for this rank: contiguous blocks, sizes differing by at most one."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size


def current() -> World:
    """The initialised process group's world, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return World()


def launched() -> bool:
    """Started by ``torchrun`` (or any launcher that sets ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str, timeout: float | None = None) -> tuple[World, str]:
    """Join the process group ``torchrun`` describes (``env://``); returns the world and this rank's device
    (``cuda`` becomes ``cuda:LOCAL_RANK``). A peer that dies or stops answering makes the collectives fail within
    ``timeout`` seconds (default :func:`timeout_s`)."""
    timeout = timeout_s() if timeout is None else timeout
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed: run one process (without torchrun)")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise UserError("train.device is cuda but this machine has no CUDA device: --set train.device=cpu")
        if local >= torch.cuda.device_count():
            raise UserError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible): start at most "
                            f"{torch.cuda.device_count()} processes per node")
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        backend = "nccl" if cuda and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    return current(), device


def _device_of(tensors: list[Tensor]) -> torch.device:
    backend = dist.get_backend()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensors[0].device if tensors and tensors[0].device.type == "cpu" else torch.device("cpu")


def reduce_step(world: World, params: list[Tensor], losses: Tensor, n_tasks: int, shard: tuple[int, int],
                ok: bool) -> tuple[Tensor, bool]:
    """All-reduce one training step: sets every ``p.grad`` to the batch mean meta-gradient (None where no rank
    produced one), returns (the whole batch's per-task losses, whether every rank's values were finite)."""
    if world.size == 1:
        return losses, ok
    dtype = params[0].dtype
    dev = _device_of(params)
    sizes = [p.numel() for p in params]
    g = sum(sizes)
    buf = torch.zeros(g + len(params) + n_tasks + 1, dtype=dtype, device=dev)
    at = 0
    for i, (p, k) in enumerate(zip(params, sizes)):
        if p.grad is not None:
            buf[at:at + k] = p.grad.reshape(-1).to(dev, buf.dtype)
            buf[g + i] = 1.0
        at += k
    lo, hi = shard
    buf[g + len(params) + lo:g + len(params) + hi] = losses.detach().to(dev, buf.dtype)
    buf[-1] = 0.0 if ok else 1.0
    dist.all_reduce(buf)
    at, has = 0, buf[g:g + len(params)].tolist()  # one device sync, not one per parameter
    for p, k, h in zip(params, sizes, has):
        p.grad = buf[at:at + k].view_as(p).to(p.device, p.dtype).clone() if h > 0 else None
        at += k
    all_losses = buf[g + len(params):g + len(params) + n_tasks].to(params[0].device)  # a rank with no task: too
    return all_losses, bool(buf[-1] == 0)


def gather_tree(world: World, tree: dict[str, Tensor]) -> dict[str, Tensor]:
    """Concatenate every rank's per-task tensors (``{name: [tasks, ...]}``) in rank order, i.e. task order."""
    if world.size == 1:
        return tree
    parts: list = [None] * world.size
    dist.all_gather_object(parts, {k: v.detach().cpu() for k, v in tree.items()})
    keys = next((p.keys() for p in parts if p), ())
    return {k: torch.cat([p[k] for p in parts if p]) for k in keys}


def gather_objects(world: World, obj) -> list:
    """Every rank's ``obj`` (tensors moved to the CPU), in rank order; ``[obj]`` in a single process."""
    if world.size == 1:
        return [obj]
    parts: list = [None] * world.size
    dist.all_gather_object(parts, _to_cpu(obj))
    return parts


def _to_cpu(obj):
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def agree(world: World, error: str | None) -> list[str | None]:
    """Every rank's start-up error (None: started cleanly), in rank order; a collective every rank must call."""
    if world.size == 1:
        return [error]
    return gather_objects(world, error)


def report_once(world: World, errors: list[str | None], mine: BaseException) -> BaseException:
    """The exception this rank raises after a failed start: its own, unless a lower rank reports the same
    message (then :class:`PeerFailed`, which prints nothing): one line per distinct cause, not one per process."""
    text = str(mine)
    if any(e == text for e in errors[:world.rank]):
        return PeerFailed(text)
    return mine


def leave() -> None:
    """Leave the process group, if this process joined one. Not while a collective failure is propagating: tearing
    down a group whose peer is gone can abort the process in native code, and the error it carries would be lost."""
    import sys

    pending = sys.exc_info()[1]
    if pending is not None and (isinstance(pending, PeerLost) or collective_failure(pending)):
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
