"""The LFT image reproductions: rows cover the paper's tables; MAML only where it applies."""

from innerloop.reproduce import lft_classification, lft_uap


def test_uap_rows_cover_table_1():
    rows = lft_uap.rows_for("cpu", "cpu")
    assert len(rows) == 2 * (1 + 2 + 2)  # oracles x (MAML on MNIST only + L2O, LFT on two training sets)
    assert {r.id for r in rows if r.method == "MAML"} == {"mnist-maml-fo", "mnist-maml-zo"}
    for r in rows:
        assert set(r.evals) == ({"MNIST"} if r.method == "MAML" else {"MNIST", "CIFAR-10"})  # mixture: pooled
        assert r.evals["MNIST"]["record"] == list(range(201))
    assert lft_uap.first_step([{"steps": 0, "mean": 10}, {"steps": 1, "mean": 91}], 90) == 1
    assert lft_uap.first_step([{"steps": 0, "mean": 10}], 90) is None


def test_classification_rows_cover_table_2():
    rows = lft_classification.rows_for("cpu", "cpu")
    assert {r.id for r in rows} == {"cifar-maml", "cifar-l2o", "cifar-lft", "mnist-cifar-l2o", "mnist-cifar-lft"}
    assert all(r.evals[t]["record"] == lft_classification.STEPS for r in rows for t in r.evals)
    for r in rows:  # the fine-tuners train on the 100 steps they are tested for, in 20-step segments
        lstm = r.method != "MAML"
        assert ("inner.steps=100" in r.overrides and "train.truncation=20" in r.overrides) == lstm, r.id


def test_zeroth_order_uap_rows_detach_the_estimate():
    for r in lft_uap.rows_for("cpu", "cpu"):
        assert ("oracle.detach=true" in r.overrides) == (r.setting["oracle"] == "zo"), r.id
        assert ("inner.steps=100" in r.overrides) == (r.method != "MAML"), r.id


def test_mixture_column_pools_the_two_sources_tasks():
    import torch

    from innerloop.evaluate import mean_ci95, pooled

    a, b = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), torch.tensor([10.0, 11.0], dtype=torch.float64)
    parts = [{"mean": float(v.mean()), "std": float(v.std()), "tasks": len(v)} for v in (a, b)]
    mean, ci = mean_ci95(torch.cat([a, b]))
    got = pooled(parts)
    assert got["tasks"] == 5 and abs(got["mean"] - mean) < 1e-12 and abs(got["ci95"] - ci) < 1e-12
