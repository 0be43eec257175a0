"""Fine-tuners shipped with the package (``--tuner default``): checksummed, rebuilt from their config, usable
from Python and the command line, and refused when corrupt."""

import json
import shutil

import pytest
import torch

from innerloop import config, pretrained
from innerloop.cli import main
from innerloop.errors import UserError
from innerloop.finetune import finetune, load_fine_tuner
from innerloop.train import train
from tests.finetune_factories import good


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A tiny trained LSTM fine-tuner shipped as ``tiny`` into a temporary weights folder."""
    cfg = config.load("sinusoid/lft-stable", ["train.iterations=2", "train.meta_batch=2", "train.horizon=0",
                                               "train.truncation=0", "inner.steps=3", "eval.tasks=4",
                                               "model.hidden=[8]"])
    train(cfg, tmp_path / "run", progress=False)
    folder = tmp_path / "weights"
    folder.mkdir()
    pretrained.ship(tmp_path / "run", "tiny", "sinusoid/lft-stable", folder=folder)
    monkeypatch.setattr(pretrained, "WEIGHTS", folder)
    return tmp_path / "run", folder


def test_a_shipped_tuner_is_the_trained_rule_and_fine_tunes_any_model(shipped):
    run, folder = shipped
    info = json.loads((folder / "tiny.json").read_text())
    assert info["config"] == "sinusoid/lft-stable" and len(info["sha256"]) == 64 and info["iterations"] == 2
    assert pretrained.available() == ["tiny"]
    rule, trained = load_fine_tuner("tiny"), load_fine_tuner(run)
    ours, theirs = rule.state_dict(), trained.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert rule.descent and rule.max_update == pytest.approx(0.1)  # the config's rule, not the defaults
    model = good()
    x = torch.linspace(-3, 3, 10).unsqueeze(1)
    report = finetune(model, x, torch.sin(x), rule, steps=5)
    assert len(report["losses"]) == 6


def test_a_corrupt_or_unknown_shipped_tuner_is_refused_in_one_line(shipped):
    _, folder = shipped
    with pytest.raises(UserError, match=r"no shipped fine-tuner named 'nope' \(shipped: tiny\)"):
        load_fine_tuner("nope")
    data = bytearray((folder / "tiny.pt").read_bytes())
    data[-30] ^= 0xFF
    (folder / "tiny.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match="is corrupt .*reinstall innerloop"):
        load_fine_tuner("tiny")


def test_finetune_command_line_takes_a_shipped_tuner(shipped, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save({"x": torch.linspace(-3, 3, 10).unsqueeze(1), "y": torch.sin(torch.linspace(-3, 3, 10)).unsqueeze(1)},
               tmp_path / "xy.pt")
    args = ["finetune", "--model", "tests.finetune_factories:good", "--data", str(tmp_path / "xy.pt"), "--steps", "4",
            "--out", str(tmp_path / "tuned.pt")]
    assert main([*args, "--tuner", "tiny"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 4 and (tmp_path / "tuned.pt").is_file()
    assert main([*args, str(shipped[0]), "--tuner", "tiny"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(args) == 2
    assert "--tuner default" in capsys.readouterr().err


def test_default_is_shipped():
    assert "default" in pretrained.available()


@pytest.mark.parametrize("name", pretrained.available())
def test_each_shipped_tuner_ships_with_its_config_and_checksum(name):
    info = pretrained.manifest(name)
    assert info["config"] == f"tuners/{name}" and info["file"] == f"{name}.pt"
    assert pretrained.sha256(pretrained.WEIGHTS / info["file"]) == info["sha256"]
    cfg = config.load(info["config"])
    assert info["iterations"] == cfg.train.iterations  # the shipped file is the config's whole run
    assert f"innerloop train tuners/{name} " in info["reproduce"] and f"'{name}'" in info["reproduce"]
    rule = load_fine_tuner(name)
    assert sum(p.numel() for p in rule.parameters()) == info["parameters"] < 10_000  # a few KB
    model = good()
    x = torch.linspace(-3, 3, 10).unsqueeze(1)
    report = finetune(model, x, torch.sin(x), rule, steps=50)
    assert report["losses"][-1] < report["losses"][0]
