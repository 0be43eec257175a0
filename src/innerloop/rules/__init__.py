"""How to step: update rules ``(params, grads, state, j) -> (params, state, info)``.

Every rule is an ``nn.Module`` whose ``nn.Parameter``s are its meta-parameters; ``forward`` is a pure
function of tensors, so the same rule runs under ``torch.func.vmap`` and in a per-task loop.
"""

from innerloop.rules.adam import Adam
from innerloop.rules.alfa import ALFA
from innerloop.rules.alfa_shared import SharedALFA
from innerloop.rules.base import UpdateRule
from innerloop.rules.lslr import PerStepLayerLR
from innerloop.rules.lstm import CoordinateLSTM
from innerloop.rules.sgd import SGD

__all__ = ["UpdateRule", "SGD", "Adam", "PerStepLayerLR", "ALFA", "SharedALFA", "CoordinateLSTM"]
