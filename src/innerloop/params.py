"""Parameters are plain ``dict[str, Tensor]``; these helpers map over them.

The dicts are ordered like ``model.named_parameters()``; ALFA's notion of a "layer" is one entry.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]


def tree_map(fn: Callable[..., Tensor], *trees: Params) -> Params:
    """Apply ``fn`` entry-wise to one or more dicts with the same keys."""
    first = trees[0]
    return {k: fn(*(t[k] for t in trees)) for k in first}


def is_norm_module(module: nn.Module) -> bool:
    """True for normalisation layers: their affine parameters stay out of the inner loop."""
    from innerloop.models.norm import BatchNorm

    return isinstance(
        module,
        (BatchNorm, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm),
    )


def norm_param_names(model: nn.Module) -> set[str]:
    """Names of parameters that belong to normalisation layers."""
    names = set()
    for mod_name, module in model.named_modules():
        if is_norm_module(module):
            for p_name, _ in module.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def split_inner_outer(model: nn.Module, adapt_norm: bool = False) -> tuple[list[str], list[str]]:
    """Split ``model``'s parameter names into (inner-loop adapted, outer-only).

    Following ALFA/MAML++ (``enable_inner_loop_optimizable_bn_params=false``), normalisation
    affine parameters are meta-learned in the outer loop only unless ``adapt_norm``.
    """
    norm = set() if adapt_norm else norm_param_names(model)
    inner, outer = [], []
    for name, _ in model.named_parameters():
        (outer if name in norm else inner).append(name)
    return inner, outer


def flat_mean(params: Params, names: Iterable[str]) -> Tensor:
    """Stack the mean of each named tensor into one vector (ALFA's layer-wise learning state)."""
    return torch.stack([params[n].mean() for n in names])


def ordered_parameter_dict(items: Iterable[tuple[str, nn.Parameter]]) -> nn.ParameterDict:
    """An ``nn.ParameterDict`` in the order of ``items`` (the model's ``named_parameters()`` order): built from a
    plain dict, PyTorch sorts the keys (``10`` before ``2``, ``bias`` before ``weight``)."""
    out = nn.ParameterDict()
    for key, value in items:
        out[key] = value
    return out


def legacy_parameter_order(module: nn.Module, prefix: str = "") -> list[str]:
    """``module.named_parameters()`` names as they came when every ``nn.ParameterDict`` was sorted by key
    (innerloop < 0.13): the order of the optimizer state in checkpoints written then."""
    own = [prefix + n for n, _ in module.named_parameters(recurse=False)]
    if isinstance(module, nn.ParameterDict):
        own.sort()
    for name, child in module.named_children():
        own += legacy_parameter_order(child, f"{prefix}{name}.")
    return own


def safe_key(name: str) -> str:
    """``nn.ParameterDict`` keys may not contain dots."""
    return name.replace(".", "__")
