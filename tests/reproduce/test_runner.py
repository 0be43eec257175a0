"""Row selection for ``innerloop reproduce --only``."""
import pytest

from innerloop.errors import UserError
from innerloop.reproduce import lft_classification
from innerloop.reproduce.runner import select_rows


def _ids(only: str | None) -> list[str]:
    return [r.id for r in select_rows(lft_classification.rows_for("smoke", "cpu"), only, "cifar-lft")]


def test_an_exact_id_picks_that_row_alone():
    assert _ids("cifar-l2o") == ["cifar-l2o"]  # not also mnist-cifar-l2o


def test_a_partial_key_picks_every_row_containing_it():
    assert _ids("l2o") == ["cifar-l2o", "mnist-cifar-l2o"]
    assert _ids("cifar-l2o,mnist-cifar-lft") == ["cifar-l2o", "mnist-cifar-lft"]
    assert len(_ids(None)) == 5


def test_a_key_matching_nothing_names_the_id_shape():
    with pytest.raises(UserError, match="row ids look like cifar-lft"):
        _ids("omniglot")


def test_a_row_with_a_main_eval_is_evaluated_once_per_eval(tmp_path, monkeypatch):
    """``Row.main`` takes the top-level metric from one of ``evals``: no separate evaluation nobody reads."""
    import innerloop.evaluate
    from innerloop.reproduce.runner import Row, _run_row

    calls = []
    real = innerloop.evaluate.evaluate_run

    def counting(run_dir, **kw):
        calls.append(kw)
        return real(run_dir, **kw)

    monkeypatch.setattr(innerloop.evaluate, "evaluate_run", counting)
    fast = ["train.iterations=2", "train.meta_batch=2", "inner.steps=1", "eval.tasks=4", "model.hidden=[4]"]
    evals = {"short": {"steps": 1}, "longer": {"steps": 3}}
    res = _run_row(Row(id="m", method="MAML", setting={}, config="sinusoid/maml", overrides=fast, paper=None,
                       evals=evals, main="longer"), str(tmp_path), 1)
    assert calls == [{"steps": 1}, {"steps": 3}]
    assert res["mean"] == res["evals"]["longer"]["mean"] and res["evals"]["short"]["steps"] == 1
    _run_row(Row(id="d", method="MAML", setting={}, config="sinusoid/maml", overrides=fast, paper=None,
                 evals=evals), str(tmp_path), 1)
    assert len(calls) == 5  # without main: the config's own evaluation as well


def test_rescoring_adds_per_task_values_and_refuses_a_changed_run(tmp_path):
    import json

    from innerloop.reproduce.runner import Row, _run_row, rescore_row

    fast = ["train.iterations=2", "train.meta_batch=2", "inner.steps=1", "eval.tasks=4", "model.hidden=[4]"]
    row = Row(id="m", method="MAML", setting={}, config="sinusoid/maml", overrides=fast, paper=None,
              evals={"one": {"steps": 1, "record": [0, 1]}}, main="one")
    first = _run_row(row, str(tmp_path), 1)
    path = tmp_path / "runs/m/result.json"
    old = json.loads(path.read_text())  # as a row scored before per-task values were kept
    for s in old["evals"]["one"]["by_steps"]:
        del s["values"]
    path.write_text(json.dumps(old))
    got = rescore_row(row, str(tmp_path), 1)
    assert got["evals"]["one"]["by_steps"] == first["evals"]["one"]["by_steps"]  # the same fixed tasks
    assert json.loads(path.read_text())["evals"]["one"]["by_steps"][1]["values"] == first["by_steps"][1]["values"]
    old["evals"]["one"]["mean"] += 1.0  # a result that another checkpoint produced
    path.write_text(json.dumps(old))
    with pytest.raises(UserError, match="changed since it was scored"):
        rescore_row(row, str(tmp_path), 1)
    with pytest.raises(UserError, match="changed since it was scored"):
        rescore_row(row, str(tmp_path), 1, tolerance=0.5)  # a tolerance smaller than the gap still refuses
    drifted = rescore_row(row, str(tmp_path), 1, tolerance=1.5)  # float-level drift: the new evaluation replaces it
    assert drifted["evals"]["one"]["mean"] == first["evals"]["one"]["mean"]
    assert drifted["evals"]["one"]["rescored_from"] == pytest.approx(old["evals"]["one"]["mean"])
    assert drifted["mean"] == first["mean"] and "values" in drifted["by_steps"][0]
    with pytest.raises(UserError, match="finish the row first"):
        rescore_row(Row(id="x", method="MAML", setting={}, config="sinusoid/maml", overrides=fast, paper=None),
                    str(tmp_path), 1)


def test_rescored_lines_name_every_moved_evaluation():
    from innerloop.reproduce.runner import rescored_lines

    moved = {"method": "LFT", "setting": {"train": "MNIST", "oracle": "fo"},
             "evals": {"MNIST": {"mean": 69.2, "rescored_from": 69.0}, "CIFAR-10": {"mean": 50.0}}}
    assert rescored_lines([None, {"method": "L2O", "setting": {}, "evals": {"MNIST": {"mean": 1.0}}}]) == []
    text = " ".join(rescored_lines([moved, None]))
    assert "LFT (MNIST, fo) on MNIST: 69.00 -> 69.20" in text and "CIFAR-10" not in text

