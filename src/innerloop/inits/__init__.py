"""Where the inner loop starts: theta_0 for every parameter of the base learner."""

from innerloop.inits.fixed import FixedInit
from innerloop.inits.l2f import Attenuator
from innerloop.inits.learned import LearnedInit
from innerloop.inits.random import RandomInit

__all__ = ["LearnedInit", "FixedInit", "RandomInit", "Attenuator"]
