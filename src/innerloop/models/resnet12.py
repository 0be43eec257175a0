"""ResNet12 as in ALFA / L2F (``ResNet12`` / ``MetaMaxResLayerReLU`` in the authors' code).

Four residual blocks of 64, 128, 256, 512 channels; no conv has a bias. Each block:

    y = relu( bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + bn_s(conv1x1_s(x)) )

then max-pool 2x2 with padding 0, 0, 1 and no pool after the last block; global average pooling and
``Linear(512 -> classes)``. Batch norm is transductive (:class:`BatchNorm` by default).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from innerloop.models.norm import make_norm


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False), make_norm(norm, cout)
        self.conv2, self.norm2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False), make_norm(norm, cout)
        self.conv3, self.norm3 = nn.Conv2d(cout, cout, 3, padding=1, bias=False), make_norm(norm, cout)
        self.shortcut, self.norm_s = nn.Conv2d(cin, cout, 1, bias=False), make_norm(norm, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return F.relu(y + self.norm_s(self.shortcut(x)))


class ResNet12(nn.Module):
    """``channels`` per block (ALFA: 64, 128, 256, 512); ``pool_padding`` per block, None = no pool."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 5,
        channels: Sequence[int] = (64, 128, 256, 512),
        pool_padding: Sequence[int | None] = (0, 0, 1, None),
        norm: str = "batch",
    ):
        super().__init__()
        if len(pool_padding) != len(channels):
            raise ValueError("pool_padding needs one entry per block")
        self.pool_padding = list(pool_padding)
        cins = [in_channels, *channels[:-1]]
        self.blocks = nn.ModuleList(ResBlock(a, b, norm) for a, b in zip(cins, channels))
        self.classifier = nn.Linear(channels[-1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, pad in zip(self.blocks, self.pool_padding):
            x = block(x)
            if pad is not None:
                x = F.max_pool2d(x, 2, padding=pad)
        return self.classifier(x.mean(dim=(2, 3)))
