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
