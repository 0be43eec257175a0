"""``innerloop data download|prepare`` through ``register``/``main``, and the ``load_dataset`` registry."""

from __future__ import annotations

import argparse
import shutil

import pytest

from innerloop.data import READERS, cli, download, load_dataset, reader_options, splits
from innerloop.errors import ConfigError
from tests.data.conftest import shared


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="innerloop")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func is cli.main
    return args.func(args)


def test_prepare_prints_counts_and_time_then_reuses_the_cache(tmp_path, capsys):
    root = shared("mnist")
    argv = ["data", "prepare", "mnist", "--root", str(root), "--split", "test", "--cache-dir", str(tmp_path)]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "mnist test: 10000 images, 10 classes, 1x28x28, decoded and cached in" in out
    assert _run(argv) == 0
    assert "loaded from cache" in capsys.readouterr().out


def test_prepare_with_options_and_all_splits(tmp_path, capsys):
    root = shared("cifar10")
    assert _run(["data", "prepare", "cifar10", "--root", str(root), "--cache-dir", str(tmp_path),
                 "--option", "format=sheets"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["cifar10 train", "cifar10 test"]


@pytest.mark.parametrize("argv,match", [
    (["data", "prepare", "imagenet", "--root", "x"], "unknown dataset 'imagenet'"),
    (["data", "prepare", "mnist", "--root", "/nonexistent", "--split", "test"], "not found"),
    (["data", "prepare", "mnist", "--root", "x", "--option", "oops"], "KEY=VALUE"),
    (["data", "prepare", "mnist", "--root", "x", "--option", "size=3"], "unknown option 'size'"),
    (["data", "download", "miniimagenet", "--root", "x"], "no canonical public download"),
    (["data", "download", "mnist", "--root", "x", "--sha256", "a=1", "--sha256", "b"], "FILE=HEX"),
])
def test_user_errors_are_one_line_with_exit_code_2(argv, match, capsys):
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("innerloop: error: ") and match in err and err.count("\n") == 1


def test_download_command_with_a_file_mirror(tmp_path, capsys):
    mnist = shared("mnist")
    mirror = tmp_path / "mirror"
    shutil.copytree(mnist, mirror)
    argv = ["data", "download", "mnist", "--root", str(tmp_path / "root"), "--mirror", mirror.as_uri()]
    for f in sorted(mirror.glob("*.gz")):
        argv += ["--sha256", f"{f.name}={download.sha256_file(f)}"]
    assert _run(argv) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 8 and sum(line.startswith("downloading file://") for line in lines) == 4
    assert err == ""  # progress goes to stdout: stderr is kept for the one-line error of a failure
    assert _run(argv) == 0
    assert "already present" in capsys.readouterr().out


def test_registry_names_splits_and_options():
    assert list(READERS) == ["omniglot", "mnist", "cifar10", "miniimagenet", "tieredimagenet", "cub", "folder"]
    assert splits("omniglot") == ("train", "val", "trainval", "test") and splits("mnist") == ("train", "test")
    opts = reader_options("omniglot", {"rotations": False})
    assert opts["rotations"] is False and opts["image_size"] == 28 and opts["protocol"] == "vinyals"
    with pytest.raises(ConfigError) as err:
        load_dataset("imagenet", "x", "train")
    assert all(name in str(err.value) for name in READERS) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="valid options are image_size"):
        load_dataset("omniglot", "x", "train", imagesize=28)
