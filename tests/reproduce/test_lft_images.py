"""The LFT image reproductions: rows cover the paper's tables; MAML only where it applies."""

from innerloop.reproduce import lft_classification, lft_uap


def test_uap_rows_cover_table_1():
    rows = lft_uap.rows_for("cpu", "cpu")
    assert len(rows) == 2 * (1 + 2 + 2)  # oracles x (MAML on MNIST only + L2O, LFT on two training sets)
    assert {r.id for r in rows if r.method == "MAML"} == {"mnist-maml-fo", "mnist-maml-zo"}
    for r in rows:
        assert set(r.evals) == ({"MNIST"} if r.method == "MAML" else set(lft_uap.TEST))
        assert r.evals["MNIST"]["record"] == list(range(201))
    assert lft_uap.first_step([{"steps": 0, "mean": 10}, {"steps": 1, "mean": 91}], 90) == 1
    assert lft_uap.first_step([{"steps": 0, "mean": 10}], 90) is None


def test_classification_rows_cover_table_2():
    rows = lft_classification.rows_for("cpu", "cpu")
    assert {r.id for r in rows} == {"cifar-maml", "cifar-l2o", "cifar-lft", "mnist-cifar-l2o", "mnist-cifar-lft"}
    assert all(r.evals[t]["record"] == lft_classification.STEPS for r in rows for t in r.evals)
