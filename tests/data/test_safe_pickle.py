"""The restricted unpickler: numpy arrays in, every other global out."""

from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from innerloop.data import safe_pickle
from innerloop.errors import UserError


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_arrays_lists_and_scalars_load(tmp_path, protocol):
    obj = {b"data": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "labels": [1, 2], "f": np.float32(0.5),
           "i": np.int64(7), "s": np.array(["ab", "c"]), "nested": {"t": (1, "x", None)}}
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = safe_pickle.str_keys(safe_pickle.load(path, "test pickle"), path, "test pickle")
    assert np.array_equal(out["data"], obj[b"data"]) and out["labels"] == [1, 2]
    assert out["f"] == np.float32(0.5) and out["i"] == 7 and out["s"].tolist() == ["ab", "c"]
    assert out["nested"] == {"t": (1, "x", None)}


@pytest.mark.parametrize("bad", [os.system, eval, collections.OrderedDict(a=1), pickle.Unpickler])
def test_other_globals_are_refused(tmp_path, bad):
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"x": bad}, protocol=2))
    with pytest.raises(UserError, match="refusing global") as err:
        safe_pickle.load(path, "test pickle")
    assert "\n" not in str(err.value)


def test_truncated_missing_and_non_dict(tmp_path):
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"a": np.zeros(100)}, protocol=2)[:-20])
    with pytest.raises(UserError, match="truncated or corrupt"):
        safe_pickle.load(path, "test pickle")
    with pytest.raises(UserError, match="not found"):
        safe_pickle.load(tmp_path / "none.pkl", "test pickle")
    with pytest.raises(UserError, match="should hold a dict"):
        safe_pickle.str_keys([1], path, "test pickle")
    assert safe_pickle.as_text(b"abc") == "abc" and safe_pickle.as_text(np.str_("x")) == "x"
