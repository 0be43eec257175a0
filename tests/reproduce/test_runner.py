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
