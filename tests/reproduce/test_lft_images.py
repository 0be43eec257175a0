"""The LFT image reproductions: rows cover the paper's tables; MAML only where it applies."""

from innerloop.reproduce import lft_classification, lft_uap


def test_uap_rows_cover_table_1():
    rows = lft_uap.rows_for("cpu", "cpu")
    assert len(rows) == 2 * (1 + 2 + 2)  # oracles x (MAML on MNIST only + L2O, LFT on two training sets)
    assert {r.id for r in rows if r.method == "MAML"} == {"mnist-maml-fo", "mnist-maml-zo"}
    for r in rows:
        assert set(r.evals) == ({"MNIST"} if r.method == "MAML" else {"MNIST", "CIFAR-10"})  # mixture: pooled
        assert r.evals["MNIST"]["record"] == list(range(201))
        assert r.main == "MNIST"  # the top-level metric is the MNIST eval, not a third evaluation
    assert lft_uap.first_step([{"steps": 0, "mean": 10}, {"steps": 1, "mean": 91}], 90) == 1
    assert lft_uap.first_step([{"steps": 0, "mean": 10}], 90) is None


def test_classification_rows_cover_table_2():
    rows = lft_classification.rows_for("cpu", "cpu")
    assert {r.id for r in rows} == {"cifar-maml", "cifar-l2o", "cifar-lft", "mnist-cifar-l2o", "mnist-cifar-lft"}
    assert all(r.evals[t]["record"] == lft_classification.STEPS for r in rows for t in r.evals)
    assert all(r.main in r.evals for r in rows)
    for r in rows:  # the fine-tuners train on the 100 steps they are tested for, backpropagated through all
        lstm = r.method != "MAML"
        assert ("inner.steps=100" in r.overrides and "train.truncation=0" in r.overrides) == lstm, r.id


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


def test_classification_steps_table_lists_each_recorded_step_of_finished_rows():
    result = {"method": "LFT", "setting": {"train": "MNIST+CIFAR-10", "ways": 2, "shots": 5}, "iterations": 1,
              "train_wall_s": 1.0, "device": "cpu", "evals": {
                  src: {"tasks": 4, "steps": 5, "by_steps": [
                      {"steps": s, "mean": 50.0 + s + off, "ci95": 1.0, "std": 2.0} for s in (0, 1, 5)]}
                  for src, off in (("MNIST (MLP)", 0.0), ("CIFAR-10 (CNN)", 10.0))}}
    lines = lft_classification.steps_table(lft_classification.expand([result]), [0, 1, 5])
    assert "| 0 steps | 1 step | 5 steps |" in lines[2]
    body = [l for l in lines if l.startswith("| MNIST+CIFAR-10")]
    assert body[:2] == [
        "| MNIST+CIFAR-10 | LFT | MNIST (MLP) | 50.0 ± 1.0 | 51.0 ± 1.0 | 55.0 ± 1.0 |",
        "| MNIST+CIFAR-10 | LFT | CIFAR-10 (CNN) | 60.0 ± 1.0 | 61.0 ± 1.0 | 65.0 ± 1.0 |",
    ]
    mixed = [c.split(" ± ")[0] for c in body[2].strip("| ").split(" | ")[3:]]
    assert body[2].startswith("| MNIST+CIFAR-10 | LFT | mixed |") and mixed == ["55.0", "56.0", "60.0"]

