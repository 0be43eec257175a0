"""innerloop: few-shot meta-learning in which the inner loop itself is learned.

The library composes four orthogonal pieces (see README):

* where to start  -- :mod:`innerloop.inits`
* how to step     -- :mod:`innerloop.rules`
* what gradient   -- :mod:`innerloop.oracles`
* meta-objective  -- :mod:`innerloop.objectives`

and runs them over batches of tasks with :mod:`innerloop.engine`. ``innerloop.load(run_dir)`` returns a
trained run's meta-learner (``.adapt``, ``.evaluate``, ``.export``) without reading its data.
"""

from innerloop.errors import UserError

__all__ = ["UserError", "__version__", "load"]


def load(run_dir, device=None, dtype=None):
    """A trained run's :class:`~innerloop.engine.MetaLearner`, without its data (:func:`innerloop.loading.load`)."""
    from innerloop.loading import load as _load

    return _load(run_dir, device=device, dtype=dtype)
__version__ = "0.1.0"
