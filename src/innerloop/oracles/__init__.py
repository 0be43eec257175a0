"""What gradient the inner loop sees: ``oracle(loss_fn, params) -> (loss, grads, queries)``."""

from innerloop.oracles.autograd import AutogradOracle
from innerloop.oracles.zeroth_order import ZerothOrderOracle

__all__ = ["AutogradOracle", "ZerothOrderOracle"]
