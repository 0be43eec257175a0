"""innerloop: few-shot meta-learning in which the inner loop itself is learned.

The library composes four orthogonal pieces (see README):

* where to start  -- :mod:`innerloop.inits`
* how to step     -- :mod:`innerloop.rules`
* what gradient   -- :mod:`innerloop.oracles`
* meta-objective  -- :mod:`innerloop.objectives`

and runs them over batches of tasks with :mod:`innerloop.engine`.
"""

from innerloop.errors import UserError

__all__ = ["UserError", "__version__"]
__version__ = "0.1.0"
