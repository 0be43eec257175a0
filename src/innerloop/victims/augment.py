"""Light training-time augmentation for small image sets, in torch (no torchvision).

Random crop after zero padding, plus random horizontal flip, applied per image to a float
``[B, C, H, W]`` batch. All randomness comes from the ``torch.Generator`` passed in, so a run
is reproducible from its seed.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image zero-padded by ``padding`` pixels on every side, then cropped back at a random offset."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h)).to(x.device)  # [B, H]
    cols = (ox[:, None] + torch.arange(w)).to(x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # advanced indexing on dims 0, 2, 3 -> [B, H, W, C]; move channels back
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, generator: torch.Generator, padding: int = 4, hflip: bool = True) -> torch.Tensor:
    """``random_crop`` then (optionally) ``random_hflip``; the output has the input's shape."""
    x = random_crop(x, padding, generator)
    return random_hflip(x, generator) if hflip else x
