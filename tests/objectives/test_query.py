import pytest

from innerloop.objectives import FinalQueryLoss, MultiStepLoss, TrajectoryLoss


def test_final_only():
    assert FinalQueryLoss().step_weights(3, 0) == [0.0, 0.0, 1.0]


def test_msl_schedule_matches_maml_plus_plus():
    msl = MultiStepLoss(msl_epochs=15)
    assert msl.step_weights(5, 0) == pytest.approx([0.2] * 5)
    w = msl.step_weights(5, 10)
    assert w[:4] == pytest.approx([max(0.2 - 10 / 75, 0.006)] * 4)
    assert w[4] == pytest.approx(min(0.2 + 10 * 4 / 75, 1 - 4 * 0.006))
    assert msl.step_weights(5, 14)[:4] == pytest.approx([0.2 - 14 / 75] * 4)
    assert MultiStepLoss(msl_epochs=1000).step_weights(5, 999)[:4] == pytest.approx([0.006] * 4)  # floor 0.03 / S
    assert msl.step_weights(5, 15) == [0, 0, 0, 0, 1.0]  # MSL off after msl_epochs


def test_trajectory_weights_and_data():
    import torch

    from innerloop.objectives import TrajectoryLoss

    assert TrajectoryLoss("uniform").step_weights(3, 0) == [1.0, 1.0, 1.0]
    assert TrajectoryLoss("increasing").step_weights(3, 0) == [1.0, 2.0, 3.0]
    assert TrajectoryLoss("final").step_weights(3, 0) == [0.0, 0.0, 1.0]
    xs, ys, xq, yq = torch.zeros(2, 1), torch.zeros(2, 1), torch.ones(3, 1), torch.ones(3, 1)
    assert TrajectoryLoss(data="query").split(xs, ys, xq, yq)[0] is xs  # LFT: fine-tune on D_tr, score on D_val
    x_in, y_in, x_m, y_m = TrajectoryLoss(data="union").split(xs, ys, xq, yq)  # L2O: D_tr u D_val for both
    assert x_in.shape == (5, 1) and torch.equal(x_in, x_m) and torch.equal(y_in, y_m)


def test_log_objective_is_refused_where_it_means_nothing():
    import pytest

    from innerloop import config as C
    from innerloop.errors import ConfigError

    with pytest.raises(ConfigError, match="objective.log applies to objective.kind = lft or l2o"):
        C.load("sinusoid/maml", ["objective.log=true"])
    assert C.load("sinusoid/lft", ["objective.log=true"]).objective.log
    assert not TrajectoryLoss("final", "query", log=True).final_only  # the checkpointed path has no log
