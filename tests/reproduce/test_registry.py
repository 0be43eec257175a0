import pytest

from innerloop.errors import UserError
from innerloop.reproduce import REPRODUCTIONS, reproduction, reproduction_rows, run_reproduction


def test_every_reproduction_has_rows_and_a_reproduce():
    for name in REPRODUCTIONS:
        module = reproduction(name)
        assert callable(module.reproduce)
        rows = reproduction_rows(name, "smoke")
        assert rows and all(rid == row.id for rid, row in rows.items())
    assert {"mnist-lft-fo", "mnist-l2o-zo", "mnist-cifar-10-lft-zo"} <= set(reproduction_rows("lft-uap", "cpu"))


def test_unknown_reproduction_names_the_available_ones(tmp_path):
    with pytest.raises(UserError, match="available: alfa-sinusoid"):
        reproduction_rows("lft-nope", "cpu")
    with pytest.raises(UserError, match="unknown reproduction 'x'"):
        run_reproduction("x", "cpu", str(tmp_path))
