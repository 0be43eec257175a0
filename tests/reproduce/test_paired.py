"""Paired LFT - L2O differences over the same fixed test tasks."""

from innerloop.reproduce import lft_classification
from innerloop.reproduce.paired import paired, paired_table


def test_paired_difference_is_the_ci_of_per_task_differences():
    import math

    from innerloop.evaluate import mean_ci95, paired_difference

    base = [50.0, 60.0, 70.0, 80.0, 90.0]  # task difficulty both methods share
    a, b = [x + 2.0 + e for x, e in zip(base, (0.5, -0.5, 0.0, 0.5, -0.5))], base
    d = paired_difference(a, b)
    diffs = [2.5, 1.5, 2.0, 2.5, 1.5]
    sd = math.sqrt(sum((x - 2.0) ** 2 for x in diffs) / 4)
    assert d["tasks"] == 5 and abs(d["mean"] - 2.0) < 1e-12 and abs(d["ci95"] - 1.96 * sd / math.sqrt(5)) < 1e-12
    import torch

    unpaired = math.hypot(mean_ci95(torch.tensor(a))[1], mean_ci95(torch.tensor(b))[1])
    assert d["ci95"] < unpaired / 10 and d["mean"] - d["ci95"] > 0  # ordered, though the per-method CIs overlap
    import pytest

    with pytest.raises(ValueError, match="equal"):
        paired_difference([1.0], [1.0, 2.0])


def test_paired_rows_pair_the_same_tasks_and_pool_the_mixture():
    def result(method, off):
        return {"method": method, "setting": {"train": "MNIST+CIFAR-10"}, "evals": {
            src: {"tasks": 2, "steps": 5, "by_steps": [
                {"steps": s, "mean": 0.0, "ci95": 0.0, "std": 0.0, "values": [v + off + s for v in vals]}
                for s in (0, 5)]}
            for src, vals in (("MNIST (MLP)", [50.0, 70.0]), ("CIFAR-10 (CNN)", [60.0, 40.0]))}}

    lft, l2o = result("LFT", 3.0), result("L2O", 0.0)
    l2o["evals"]["CIFAR-10 (CNN)"]["by_steps"][1]["values"] = [60.0, 42.0]  # at step 5: LFT +8 and +6 on CIFAR-10
    pair = lambda rs: paired(rs, lambda r: {"train": r["setting"]["train"]}, lft_classification.COLUMNS)
    got = {(p["setting"]["test"], p["setting"]["steps"]): p for p in pair([lft, l2o, {**lft, "method": "MAML"}])}
    assert set(got) == {(t, s) for t in lft_classification.TEST for s in (0, 5)}
    assert got["MNIST (MLP)", 0]["mean"] == 3.0 and got["MNIST (MLP)", 0]["ci95"] == 0.0
    assert got["CIFAR-10 (CNN)", 5]["mean"] == 7.0 and got["mixed", 5]["tasks"] == 4
    assert abs(got["mixed", 5]["mean"] - (3 + 3 + 8 + 6) / 4) < 1e-12
    lines = paired_table(list(got.values()), ["train"], [0, 5], "points")
    assert lines[2] == "| meta-training | test | 0 steps | 5 steps |"
    assert "| MNIST+CIFAR-10 | CIFAR-10 (CNN) | +3.0 ± 0.0 | +7.0 ± 2.0 |" in lines
    assert [p["setting"]["steps"] for p in paired([lft, l2o], lambda r: {}, {"m": ["MNIST (MLP)"]}, steps=[5])] == [5]
    del l2o["evals"]["MNIST (MLP)"]["by_steps"][0]["values"]  # a row scored before per-task values were kept
    assert {p["setting"]["test"] for p in pair([lft, l2o])} == {"CIFAR-10 (CNN)"}
