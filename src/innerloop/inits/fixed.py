"""Fixed random initialisation (ALFA + random init): drawn once from a seed, never trained."""

from __future__ import annotations

import torch
from torch import nn

from innerloop.models.norm import BatchNorm
from innerloop.params import Params, is_norm_module, safe_key


def xavier_params(model: nn.Module, seed: int) -> Params:
    """Xavier-uniform weights, zero biases, unit/zero norm affine (ALFA's ``random_init``)."""
    gen = torch.Generator().manual_seed(seed)
    out: Params = {}
    modules = dict(model.named_modules())
    for name, p in model.named_parameters():
        mod_name, _, leaf = name.rpartition(".")
        module = modules[mod_name] if mod_name else model
        t = torch.empty_like(p, device="cpu")
        if is_norm_module(module) or isinstance(module, BatchNorm):
            t.fill_(1.0 if leaf == "weight" else 0.0)
        elif leaf == "bias" or p.dim() < 2:
            t.zero_()
        else:
            fan_in = p.shape[1] * p[0][0].numel()
            fan_out = p.shape[0] * p[0][0].numel()
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            t.uniform_(-bound, bound, generator=gen)
        out[name] = t.to(device=p.device, dtype=p.dtype)
    return out


class FixedInit(nn.Module):
    """theta_0 stored as buffers: part of the checkpoint, invisible to the meta-optimiser."""

    def __init__(self, model: nn.Module, seed: int = 104, scheme: str = "xavier"):
        super().__init__()
        self.names = [n for n, _ in model.named_parameters()]
        if scheme == "xavier":
            values = xavier_params(model, seed)
        elif scheme == "model":
            values = {n: p.detach().clone() for n, p in model.named_parameters()}
        else:
            raise ValueError(f"unknown fixed-init scheme {scheme!r}; use 'xavier' or 'model'")
        for n in self.names:
            self.register_buffer(safe_key(n), values[n])

    def forward(self) -> Params:
        return {n: getattr(self, safe_key(n)) for n in self.names}
