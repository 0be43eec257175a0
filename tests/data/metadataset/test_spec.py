"""``dataset_spec.json`` parsing for the three kinds, and its one-line errors (issue 25)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from innerloop.data.metadataset.spec import load_spec, parse_spec, split_name, write_spec
from innerloop.errors import ConfigError, UserError
from tests.data.metadataset.fixtures import bilevel_json, dag_json, flat_json


def test_flat_class_ids_are_contiguous_train_valid_test(tmp_path):
    write_spec(flat_json(), tmp_path)
    spec = load_spec(tmp_path)
    assert spec.kind == "flat" and spec.name == "flat" and spec.num_classes == 16
    assert spec.classes("train").tolist() == list(range(6))
    assert spec.classes("VALID").tolist() == list(range(6, 11))
    assert spec.classes("test").tolist() == list(range(11, 16))
    assert spec.images([0, 5, 15]).tolist() == [4, 4 + 5 % 5, 4 + 15 % 5]
    assert spec.class_names[3] == "class3"
    assert spec.record_path(7) == tmp_path / "7.tfrecords"
    assert load_spec(tmp_path / "dataset_spec.json").classes("test").tolist() == list(range(11, 16))


def test_bilevel_superclasses_own_contiguous_classes():
    spec = parse_spec(bilevel_json())
    assert spec.kind == "bilevel"
    assert spec.superclasses("train").tolist() == [0, 1] and spec.superclasses("valid").tolist() == [2]
    assert [c.tolist() for c in spec.superclass_classes] == [list(range(0, 5)), list(range(5, 12)),
                                                              list(range(12, 17)), list(range(17, 23))]
    assert spec.classes("train").tolist() == list(range(12)) and spec.classes("test").tolist() == list(range(17, 23))
    assert spec.superclass_names == ["Alpha", "Beta", "Gamma", "Delta"]


def test_dag_leaves_spanning_sets_and_eligible_nodes():
    spec = parse_spec(dag_json())
    assert spec.kind == "hierarchical"
    train_leaves = [f"n1{i:07d}" for i in range(8)]
    assert spec.leaves("train") == train_leaves
    assert spec.classes("train").tolist() == list(range(8))
    assert spec.classes("valid").tolist() == list(range(8, 13)) and spec.classes("test").tolist() == list(range(13, 19))
    assert [spec.class_names[i] for i in range(8)] == train_leaves
    span = spec.spanning_leaves("train")
    assert span["n0000000"] == train_leaves and span["n0000003"] == [train_leaves[i] for i in (0, 1, 5, 6)]
    assert span[train_leaves[2]] == [train_leaves[2]]
    # root spans 8, a spans 5, b 3 (< min_ways), s 4 (< min_ways); leaves are never eligible
    assert [(n, ids.tolist()) for n, ids in spec.eligible_nodes("train")] == [("n0000000", list(range(8))),
                                                                             ("n0000001", [0, 1, 2, 3, 4])]
    assert [n for n, _ in spec.eligible_nodes("train", min_ways=3)] == ["n0000000", "n0000001", "n0000002",
                                                                        "n0000003"]
    assert [n for n, _ in spec.eligible_nodes("train", max_leaves=7)] == ["n0000001"]
    assert [n for n, _ in spec.eligible_nodes("train", usable=[0, 1, 2, 3, 5])] == ["n0000000"]
    # images_per_class is keyed by split, then WordNet id (internal nodes listed too are ignored)
    assert spec.images(spec.classes("train")).tolist() == [4, 5, 6, 7, 4, 5, 6, 7]


def test_dag_class_names_must_be_the_split_leaves():
    data = dag_json()
    data["class_names"]["0"], data["class_names"]["8"] = data["class_names"]["8"], data["class_names"]["0"]
    with pytest.raises(UserError, match="not the leaves of the TRAIN subgraph"):
        parse_spec(data)


def test_split_names():
    assert [split_name(s) for s in ("train", "Valid", "val", "validation", "TEST", "Split.TRAIN")] == \
        ["TRAIN", "VALID", "VALID", "VALID", "TEST", "TRAIN"]
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        split_name("dev")


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("__class__"), "'__class__' is None"),
    (lambda d: d.update(__class__="Foo"), "'__class__' is 'Foo'"),
    (lambda d: d.pop("classes_per_split"), "missing key 'classes_per_split'"),
    (lambda d: d["images_per_class"].pop("3"), "images_per_class has no entry for id 3"),
    (lambda d: d["images_per_class"].update({"2": -1}), "non-negative integer"),
    (lambda d: d["classes_per_split"].update({"DEV": 1}), "unknown split 'DEV'"),
    (lambda d: d.update(file_pattern=3), "file_pattern"),
])
def test_bad_specs_are_one_line_errors(tmp_path, mutate, match):
    data = flat_json()
    mutate(data)
    (tmp_path / "dataset_spec.json").write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        load_spec(tmp_path)
    message = str(err.value)
    assert match in message and "\n" not in message and str(tmp_path / "dataset_spec.json") in message
    assert "to-records" in message


def test_missing_or_unreadable_spec(tmp_path):
    with pytest.raises(UserError) as err:
        load_spec(tmp_path)
    assert "no dataset_spec.json in" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "dataset_spec.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        load_spec(tmp_path)
    (tmp_path / "dataset_spec.json").write_text("[]")
    with pytest.raises(UserError, match="expected a JSON object"):
        load_spec(tmp_path)


def test_bilevel_and_dag_missing_keys():
    data = bilevel_json()
    data.pop("classes_per_superclass")
    with pytest.raises(UserError, match="missing key 'classes_per_superclass'"):
        parse_spec(data)
    data = dag_json()
    del data["images_per_class"]["TRAIN"]["n10000003"]
    with pytest.raises(UserError, match=r"images_per_class\['TRAIN'\] has no entry for leaf n10000003"):
        parse_spec(data)
    data = dag_json()
    data["split_subgraphs"]["TRAIN"][1]["children_ids"].append("n0000000")  # a -> root: a cycle
    with pytest.raises(UserError, match="cycle"):
        parse_spec(data).spanning_leaves("train")


def test_unsupported_file_pattern(tmp_path):
    data = flat_json()
    data["file_pattern"] = "{}_{}.tfrecords"
    write_spec(data, tmp_path)
    with pytest.raises(UserError, match="only one file per class"):
        load_spec(tmp_path).record_path(0)


def test_write_spec_refuses_an_invalid_object(tmp_path):
    data = flat_json()
    data["classes_per_split"]["TRAIN"] = 100
    with pytest.raises(UserError, match="no entry for id 16"):
        write_spec(data, tmp_path)
    assert not (tmp_path / "dataset_spec.json").exists()
    assert isinstance(parse_spec(flat_json()).images_per_class, np.ndarray)
