"""Base learners: plain ``nn.Module``s, run functionally by the engine."""

from innerloop.models.conv4 import Conv4
from innerloop.models.lenet5 import LeNet5
from innerloop.models.mlp import MLP
from innerloop.models.norm import BatchNorm, convert_norm, make_norm
from innerloop.models.perturbation import Perturbation, frozen_copy
from innerloop.models.resnet12 import ResNet12

__all__ = ["MLP", "Conv4", "ResNet12", "LeNet5", "BatchNorm", "convert_norm", "make_norm", "Perturbation", "frozen_copy"]
