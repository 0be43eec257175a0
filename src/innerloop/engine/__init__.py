"""The executor: runs the inner loop over a batch of tasks (vmap, per-task loop, checkpointed)."""

from innerloop.engine.learner import Learner
from innerloop.engine.meta import MetaLearner
from innerloop.engine.executor import choose_mode

__all__ = ["Learner", "MetaLearner", "choose_mode"]
