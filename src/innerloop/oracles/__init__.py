"""What gradient the inner loop sees: ``oracle(loss_fn, params, key=None) -> (loss, grads, queries)``."""

from innerloop.oracles.autograd import AutogradOracle
from innerloop.oracles.zeroth_order import ZerothOrderOracle

__all__ = ["AutogradOracle", "ZerothOrderOracle", "draws_in_order"]


def draws_in_order(oracle: object) -> bool:
    """Whether ``oracle`` takes random numbers from the global generator in call order (so its results depend on
    how tasks are batched, threaded or sharded): a zeroth-order oracle with ``noise="stream"``, or any oracle that
    does not say otherwise (``draws = False``, or ``keyed = True``)."""
    return bool(getattr(oracle, "draws", True)) and not getattr(oracle, "keyed", False)
