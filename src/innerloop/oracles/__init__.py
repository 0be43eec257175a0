"""What gradient the inner loop sees: ``oracle(loss_fn, params) -> (loss, grads, queries)``."""

from innerloop.oracles.autograd import AutogradOracle

__all__ = ["AutogradOracle"]
