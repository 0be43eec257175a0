"""What the meta-learner is scored on: weights on the loss after each inner step, and on which data."""

from innerloop.objectives.query import FinalQueryLoss, MultiStepLoss, QueryObjective, TrajectoryLoss

__all__ = ["QueryObjective", "FinalQueryLoss", "MultiStepLoss", "TrajectoryLoss"]
