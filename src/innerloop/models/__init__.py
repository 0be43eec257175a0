"""Base learners: plain ``nn.Module``s, run functionally by the engine."""

from innerloop.models.conv4 import Conv4
from innerloop.models.mlp import MLP
from innerloop.models.norm import BatchNorm

__all__ = ["MLP", "Conv4", "BatchNorm"]
