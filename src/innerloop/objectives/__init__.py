"""What the meta-learner is scored on: weights on the query loss after each inner step."""

from innerloop.objectives.query import FinalQueryLoss, MultiStepLoss, QueryObjective

__all__ = ["QueryObjective", "FinalQueryLoss", "MultiStepLoss"]
