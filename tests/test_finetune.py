"""Fine-tuning a user's own model with a trained fine-tuner (Python API and CLI)."""

import json
import sys

import torch
from torch import nn

from innerloop import config
from innerloop.cli import main
from innerloop.finetune import finetune, load_fine_tuner
from innerloop.train import train


def trained_lft(tmp_path):
    cfg = config.load("sinusoid/lft", ["train.iterations=3", "train.meta_batch=2", "inner.steps=3", "eval.tasks=5",
                                        "model.hidden=[8]"])
    train(cfg, tmp_path / "lft", progress=False)
    return tmp_path / "lft"


def user_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))


def test_finetune_a_different_architecture_fo_and_zo(tmp_path):
    run = trained_lft(tmp_path)
    rule = load_fine_tuner(run)
    x = torch.linspace(-3, 3, 10).unsqueeze(1)
    y = torch.sin(x)
    for oracle in ("fo", "zo"):
        model = user_model()
        before = [p.clone() for p in model.parameters()]
        report = finetune(model, x, y, rule, steps=5, oracle=oracle)
        assert len(report["losses"]) == 6
        assert report["queries"] == (5 * 21 + 1 if oracle == "zo" else 6)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_finetune_cli(tmp_path, capsys, monkeypatch):
    run = trained_lft(tmp_path)
    (tmp_path / "usermodel.py").write_text(
        "import torch\nfrom torch import nn\n\ndef make():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    x = torch.linspace(-3, 3, 10).unsqueeze(1)
    torch.save({"x": x, "y": torch.sin(x)}, tmp_path / "data.pt")
    capsys.readouterr()
    rc = main(["finetune", str(run), "--model", "usermodel:make", "--data", str(tmp_path / "data.pt"),
               "--steps", "4", "--oracle", "zo", "--out", str(tmp_path / "tuned.pt")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["loss_queries"] == 4 * 21 + 1 and out["steps"] == 4
    # the estimator's settings: 5 orthogonal directions, central differences: 2 x 5 + 1 queries per step
    assert main(["finetune", str(run), "--model", "usermodel:make", "--data", str(tmp_path / "data.pt"), "--steps", "4",
                 "--oracle", "zo", "--zo-q", "5", "--zo-directions", "orthogonal", "--zo-antithetic",
                 "--out", str(tmp_path / "tuned5.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["loss_queries"] == 4 * 11 + 1
    assert main(["finetune", str(run), "--model", "usermodel:make", "--data", str(tmp_path / "data.pt"), "--steps", "4",
                 "--oracle", "zo", "--zo-q", "500", "--zo-directions", "orthogonal", "--out", str(tmp_path / "t5.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--zo-q = 500" in err and "use q <= 25" in err and not (tmp_path / "t5.pt").exists()
    state = torch.load(tmp_path / "tuned.pt", weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert main(["finetune", str(run), "--model", "nomodule:make", "--data", str(tmp_path / "data.pt"),
                 "--out", str(tmp_path / "t.pt")]) == 2
    capsys.readouterr()
    assert main(["finetune", str(run), "--model", "usermodel:make", "--data", str(tmp_path / "data.pt"),
                 "--lr", "0.01", "--out", str(tmp_path / "t.pt")]) == 2
    assert "has none: drop --lr" in capsys.readouterr().err
    assert main(["finetune", str(run), "--model", "usermodel:make", "--data", str(tmp_path / "missing.pt"),
                 "--out", str(tmp_path / "t.pt")]) == 2
