"""``innerloop victim train`` through ``register``/``main``: JSON line, reuse, exit codes."""

from __future__ import annotations

import argparse
import json

import pytest

from innerloop.victims import cli
from tests.victims.conftest import shared


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="innerloop")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func is cli.main
    return args.func(args)


def test_train_prints_one_json_line_then_reuses(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INNERLOOP_DATA", str(shared("mnist").parent))
    monkeypatch.chdir(tmp_path)
    argv = ["victim", "train", "--dataset", "mnist", "--epochs", "1", "--limit", "300", "--quiet"]
    assert _run(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    summary = json.loads(out[0])
    assert summary["dataset"] == "mnist" and summary["reused"] is False and 0 <= summary["test_accuracy"] <= 1
    assert (tmp_path / "victims" / "mnist" / "victim.pt").is_file()  # the default --out
    assert _run(argv[:-1]) == 0  # without --quiet: the reuse note goes to stderr
    captured = capsys.readouterr()
    assert json.loads(captured.out)["reused"] is True and "reusing" in captured.err


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "victim.pt").write_bytes(b"junk")
    assert _run(["victim", "train", "--dataset", "mnist", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("innerloop: error: ") and err.count("\n") == 1 and "--force" in err
    assert _run(["victim", "train", "--dataset", "cifar10", "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "INNERLOOP_DATA" in err
    assert _run(["victim", "train", "--dataset", "mnist", "--data", str(tmp_path / "none"),
                 "--out", str(tmp_path / "x"), "--limit", "10"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bad_arguments_exit_2(capsys):
    from innerloop.cli import main as innerloop_main

    with pytest.raises(SystemExit) as exit_:
        innerloop_main(["victim", "train", "--dataset", "svhn"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("innerloop: error: ") and err.count("\n") == 1
