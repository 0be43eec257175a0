"""``innerloop data to-records``: small conversions of the shared Omniglot/MNIST/CIFAR-10, read back (issue 25)."""

from __future__ import annotations

import argparse
import io
import json
import zipfile

import numpy as np
from PIL import Image

from innerloop.data import cli, mnist
from innerloop.data.metadataset import RecordSource, load_spec
from innerloop.data.metadataset.convert import convert
from innerloop.data.metadataset.records import RecordFile
from tests.data.conftest import shared


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="innerloop")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_omniglot_subset_is_bilevel_with_original_pngs(tmp_path, capsys):
    data = shared("omniglot").parent
    out = tmp_path / "records"
    assert _run(["data", "to-records", "omniglot", "--out", str(out), "--data", str(data),
                 "--max-classes", "5", "--max-images", "4"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("omniglot: 250 classes (TRAIN/VALID/TEST 125/25/100 in 25/5/20 alphabets), 1000 images")
    spec = load_spec(out / "omniglot")
    assert spec.kind == "bilevel" and len(spec.superclass_classes) == 50
    names = spec.superclass_names
    assert names[25:30] == ["Blackfoot_(Canadian_Aboriginal_Syllabics)", "Ojibwe_(Canadian_Aboriginal_Syllabics)",
                            "Inuktitut_(Canadian_Aboriginal_Syllabics)", "Tagalog", "Alphabet_of_the_Magi"]
    assert names[0] == "Anglo-Saxon_Futhorc" and names[30] == "Angelic"
    assert spec.class_names[0] == "Anglo-Saxon_Futhorc-character01"
    # record bytes are the original PNG files
    with zipfile.ZipFile(data / "omniglot" / "images_background.zip") as z:
        member = sorted(n for n in z.namelist() if "/Anglo-Saxon_Futhorc/character02/" in n and n.endswith(".png"))[1]
        original = z.read(member)
    assert RecordFile(out / "omniglot" / "1.tfrecords").read_example(1) == (original, 1)
    source = RecordSource(out / "omniglot", image_size=28)
    ep = next(source.episodes("train", 1, seed=0))
    group = spec.superclass_classes[ep.description.group]
    assert ep.ways == 5 and set(ep.classes.tolist()) == set(group.tolist())
    assert ep.description.query == 2  # min(10, floor(4 / 2))
    assert ep.support_x.shape[1:] == (3, 28, 28) and ep.query_x.shape == (10, 3, 28, 28)


def test_flat_sources_with_a_split_and_lossless_pixels(tmp_path, capsys):
    data = shared("mnist").parent
    shared("cifar10")
    out = tmp_path / "records"
    assert _run(["data", "to-records", "mnist", "cifar10", "--out", str(out), "--data", str(data),
                 "--max-images", "12", "--flat-split", "5,2,3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["mnist", "cifar10"]
    assert "10 classes (TRAIN/VALID/TEST 5/2/3), 120 images" in lines[0]
    spec = load_spec(out / "mnist")
    assert spec.kind == "flat" and spec.classes("valid").tolist() == [5, 6] and spec.images([0]).tolist() == [12]
    test = mnist.read(data / "mnist", "test", image_size=None)
    first_sevens = np.flatnonzero(test.labels == 7)[:12]
    stored = RecordSource(out / "mnist", image_size=None, channels=1).read_images(7, range(12))
    assert np.array_equal(stored, test.images[first_sevens])  # PNG is lossless, test-split order kept
    cifar = load_spec(out / "cifar10")
    assert cifar.class_names[:2] == ["airplane", "automobile"]
    png = RecordFile(out / "cifar10" / "0.tfrecords").read_example(0)[0]
    assert Image.open(io.BytesIO(png)).mode == "RGB"
    ep = next(RecordSource(out / "cifar10", image_size=32).episodes("train", 1, seed=1))
    assert ep.ways == 5 and set(ep.classes.tolist()) <= set(range(5)) and ep.support_x.shape[1:] == (3, 32, 32)


def test_defaults_are_test_only_flat_sources(tmp_path):
    data = shared("cifar10").parent
    folder = convert("cifar10", tmp_path, data=data, max_images=11, log=None)
    raw = json.loads((folder / "dataset_spec.json").read_text())
    assert raw["classes_per_split"] == {"TRAIN": 0, "VALID": 0, "TEST": 10}
    assert raw["__class__"] == "DatasetSpecification" and raw["file_pattern"] == "{}.tfrecords"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{i}.tfrecords" for i in range(10)]
                                                              + ["dataset_spec.json"])
    ep = next(RecordSource(folder).episodes("test", 1, seed=0))
    assert ep.support_x.shape[1:] == (3, 84, 84)


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("INNERLOOP_DATA", raising=False)
    cases = [
        (["data", "to-records", "mnist", "--out", str(tmp_path / "o"), "--data", str(tmp_path)],
         "no mnist/ folder under"),
        (["data", "to-records", "mnist", "--out", str(tmp_path / "o")], "pass --data DIR"),
        (["data", "to-records", "imagenet", "--out", str(tmp_path / "o"), "--data", str(tmp_path)],
         "unknown source 'imagenet'"),
        (["data", "to-records", "mnist", "--out", str(tmp_path / "o"), "--flat-split", "a,b"], "--flat-split"),
        (["data", "to-records", "mnist", "--out", str(tmp_path / "o"), "--max-images", "0"], "max_images"),
    ]
    for argv, match in cases:
        assert _run(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("innerloop: error: ") and match in err and err.count("\n") == 1, err
        if "folder" in match or "DIR" in match:
            assert "--data" in err  # names the fix


def test_existing_output_needs_force_and_a_records_folder(tmp_path, capsys):
    data = shared("mnist").parent
    argv = ["data", "to-records", "mnist", "--out", str(tmp_path), "--data", str(data), "--max-images", "3"]
    assert _run(argv) == 0
    assert _run(argv) == 2 and "already exists: pass --force" in capsys.readouterr().err
    assert _run(argv + ["--force", "--max-classes", "6"]) == 0
    assert load_spec(tmp_path / "mnist").num_classes == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left
    other = tmp_path / "other" / "mnist"
    other.mkdir(parents=True)
    (other / "keep.txt").write_text("mine")
    assert _run(["data", "to-records", "mnist", "--out", str(other.parent), "--data", str(data), "--force"]) == 2
    assert "not a Meta-Dataset records folder" in capsys.readouterr().err and (other / "keep.txt").exists()
