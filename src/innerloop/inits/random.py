"""A fresh random initialisation for every task (LFT, L2O): nothing is meta-learned here."""

from __future__ import annotations

import math

import torch
from torch import nn

from innerloop.params import Params, is_norm_module

SCHEMES = ("torch", "xavier", "kaiming", "normal")


class RandomInit(nn.Module):
    """``sample(n)`` draws ``n`` independent theta_0 (leading task dimension) from the global RNG.

    Schemes: ``"torch"`` — PyTorch's default for Linear/Conv (weights and biases ~ U(+-1/sqrt(fan_in)));
    ``"xavier"`` — Xavier-uniform weights, zero biases; ``"kaiming"`` — He-uniform weights
    U(+-sqrt(6 / fan_in)) (variance 2 / fan_in: a ReLU layer keeps its input's scale), zero biases;
    ``"normal"`` — N(0, std^2) everywhere (e.g. a UAP perturbation, ZO-L2L's 1e-4 initial noise). Norm affine parameters start at 1 / 0.
    """

    per_task = True

    def __init__(self, model: nn.Module, scheme: str = "torch", std: float = 1e-4):
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}")
        self.scheme, self.std = scheme, std
        modules = dict(model.named_modules())
        self.specs = []
        for name, p in model.named_parameters():
            mod_name, _, leaf = name.rpartition(".")
            module = modules[mod_name] if mod_name else model
            weight = module.get_parameter("weight") if hasattr(module, "weight") and isinstance(module.weight, torch.Tensor) else p
            fan_in = weight.shape[1] * weight[0][0].numel() if weight.dim() >= 2 else weight.numel()
            fan_out = weight.shape[0] * weight[0][0].numel() if weight.dim() >= 2 else weight.numel()
            self.specs.append((name, tuple(p.shape), leaf, is_norm_module(module), fan_in, fan_out))
        self.register_buffer("_ref", torch.zeros(()), persistent=False)  # follows .to(device, dtype)

    def sample(self, n: int) -> Params:
        out: Params = {}
        ref = self._ref
        for name, shape, leaf, norm, fan_in, fan_out in self.specs:
            size = (n, *shape)
            if norm:
                out[name] = (torch.ones if leaf == "weight" else torch.zeros)(size, dtype=ref.dtype, device=ref.device)
            elif self.scheme == "normal":
                out[name] = self.std * torch.randn(size, dtype=ref.dtype, device=ref.device)
            elif self.scheme in ("xavier", "kaiming") and leaf == "bias":
                out[name] = torch.zeros(size, dtype=ref.dtype, device=ref.device)
            else:
                bound = {"xavier": math.sqrt(6.0 / (fan_in + fan_out)),
                         "kaiming": math.sqrt(6.0 / fan_in)}.get(self.scheme, 1.0 / math.sqrt(fan_in))
                out[name] = (torch.rand(size, dtype=ref.dtype, device=ref.device) * 2 - 1) * bound
        return out

    def forward(self) -> Params:
        return {k: v[0] for k, v in self.sample(1).items()}
