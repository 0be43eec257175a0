import pytest

from innerloop.objectives import FinalQueryLoss, MultiStepLoss


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
