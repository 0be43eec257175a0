"""The 4-CONV few-shot backbone (MAML / ALFA): 4 x [conv3x3 -> BN -> activation -> maxpool2]."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from innerloop.models.norm import make_norm


class Conv4(nn.Module):
    """Four conv stages then a linear classifier.

    ALFA uses 48 filters and LeakyReLU (slope 0.01) on 84x84 images; MAML's Omniglot net uses 64
    filters on 28x28. Batch norm is transductive (:class:`BatchNorm`); pass ``norm="torch"`` to use
    ``nn.BatchNorm2d(track_running_stats=False)`` instead (then the engine avoids ``vmap``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 5,
        filters: int = 64,
        image_size: int = 28,
        activation: str = "leaky_relu",
        norm: str = "batch",
    ):
        super().__init__()
        self.activation = activation
        blocks = []
        c, s = in_channels, image_size
        for _ in range(4):
            conv = nn.Conv2d(c, filters, 3, padding=1)
            blocks.append(nn.ModuleDict({"conv": conv, "norm": make_norm(norm, filters)}))
            c, s = filters, s // 2
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(filters * s * s, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block["norm"](block["conv"](x))
            x = F.leaky_relu(x, 0.01) if self.activation == "leaky_relu" else F.relu(x)
            x = F.max_pool2d(x, 2)
        return self.classifier(x.flatten(1))
