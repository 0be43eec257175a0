"""Is this code running inside a ``torch.func`` transform (``vmap``, ``grad``, ``vjp``, ...)?

The engine runs the same per-task function two ways: under ``torch.func.vmap`` (batched tasks) and in a
plain per-task loop. Some operations have a faster form that is only correct, or only possible, outside
the transforms: ``torch.autograd.grad`` (the plain loop's inner gradient, ~1.5x fewer Python calls than
``torch.func.grad_and_value``) and PyTorch's fused ``batch_norm`` kernel (exact in the plain loop, wrong
second-order meta-gradient under ``vmap`` with per-task affine weights, functorch#534). Both pick their
form with :func:`inside_transform`. Under ``torch.compile`` the answer is always True: the transform-safe
forms trace into one graph, and the compiler fuses them anyway.
"""

from __future__ import annotations

import torch


def inside_transform() -> bool:
    """True while any ``torch.func`` transform is active (the functorch interpreter stack is not empty),
    and while ``torch.compile`` traces."""
    if torch.compiler.is_compiling():
        return True
    return torch._C._functorch.maybe_current_level() is not None
