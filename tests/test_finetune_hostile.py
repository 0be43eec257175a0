"""``innerloop finetune`` against hostile input (issue 19): every mistake is one line, exit 2, nothing written.

Each corpus case builds its inputs in a fresh folder, runs the CLI in-process through :mod:`tests.faultkit`
and asserts a clean failure: exit 2, one ``innerloop: error:`` line naming the problem, no traceback, and
nothing created or changed in the folder (so ``--out`` never appears, and an existing ``--out`` keeps its bytes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from innerloop import config
from innerloop.errors import UserError
from innerloop.finetune import finetune, load_fine_tuner
from innerloop.train import train
from tests import finetune_factories as factories
from tests.faultkit import assert_clean_failure, run_cli

REPO = Path(__file__).resolve().parents[1]
SMALL = ["train.iterations=2", "train.meta_batch=2", "inner.steps=2", "eval.tasks=2", "model.hidden=[8]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune_runs")
    train(config.load("sinusoid/lft", SMALL), root / "lft", progress=False)
    train(config.load("sinusoid/alfa-maml", SMALL), root / "alfa", progress=False)
    return {"lft": root / "lft", "alfa": root / "alfa", "root": root}


@pytest.fixture(autouse=True)
def _factories_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))  # --model tests.finetune_factories:NAME


def _x(n: int = 10, d: int = 1) -> torch.Tensor:
    return torch.linspace(-3, 3, n).unsqueeze(1).repeat(1, d)


X = _x()
GOOD = {"x": X, "y": torch.sin(X)}
XC = torch.stack([torch.linspace(-1, 1, 10), torch.linspace(1, -1, 10)], 1)  # classifier inputs [10, 2]
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def _save(obj, path: Path) -> str:
    torch.save(obj, path)
    return str(path)


def _garbage(path: Path) -> str:
    path.write_bytes(b"this is not a torch file\n" * 10)
    return str(path)


def _nan_state() -> dict:
    state = factories.good().state_dict()
    state["0.weight"][0, 0] = float("nan")
    return state


def _npz_strings(path: Path) -> str:
    np.savez(path, x=np.array(["a"] * 10), y=np.zeros((10, 1), dtype=np.float32))
    return str(path)


def _with(data: dict, **changes) -> dict:
    return {**data, **changes}


# name -> (changes to the default command, texts the error line must contain).
# Default: finetune LFT_RUN --model tests.finetune_factories:good --data WS/data.pt (GOOD) --steps 2 --out WS/tuned.pt
# A value may be a callable of the case folder (it writes a file there and returns its path).
CASES = {
    # 1. silently wrong shapes
    "mse_y_vector_vs_column_output": ({"data": _with(GOOD, y=torch.sin(X).squeeze(1))}, ["[10, 1]", "[10]"]),
    "mse_y_too_wide": ({"data": _with(GOOD, y=torch.sin(X).repeat(1, 2))}, ["[10, 1]", "[10, 2]"]),
    "ce_y_column": ({"model": "classifier", "loss": "cross_entropy", "data": {"x": XC, "y": LABELS.unsqueeze(1)}},
                    ["[10, 3]", "[10, 1]"]),
    "ce_y_fractional": ({"model": "classifier", "loss": "cross_entropy", "data": {"x": XC, "y": LABELS + 0.5}},
                        ["not whole numbers"]),
    "ce_label_too_big": ({"model": "classifier", "loss": "cross_entropy", "data": {"x": XC, "y": LABELS + 1}},
                         ["[0, 3)"]),
    "ce_label_negative": ({"model": "classifier", "loss": "cross_entropy", "data": {"x": XC, "y": LABELS - 1}},
                          ["[0, 3)"]),
    "x_y_first_dim_differ": ({"data": _with(GOOD, y=torch.sin(X)[:9])}, ["[10, 1]", "[9, 1]"]),
    "no_examples": ({"data": {"x": torch.zeros(0, 1), "y": torch.zeros(0, 1)}}, ["no examples"]),
    "x_scalar": ({"data": {"x": torch.tensor(1.0), "y": torch.tensor(1.0)}}, ["x has shape []"]),
    # 2. non-finite data, and fine-tuning that diverges
    "nan_in_x": ({"data": _with(GOOD, x=torch.where(X > 2, float("nan"), X))}, ["x holds", "non-finite"]),
    "inf_in_y": ({"data": _with(GOOD, y=torch.where(X > 2, float("inf"), X))}, ["y holds", "non-finite"]),
    "diverges_huge_x_fo": ({"model": "linear", "data": _with(GOOD, x=X * 2e19), "steps": "20"},
                           ["non-finite loss", "after 8 of 20 steps", "nothing was written"]),
    "diverges_huge_x_zo": ({"model": "linear", "data": _with(GOOD, x=X * 2e19), "steps": "20", "oracle": "zo"},
                           ["non-finite loss", "nothing was written"]),
    "diverges_keeps_existing_out": ({"model": "linear", "data": _with(GOOD, x=X * 2e19), "steps": "20",
                                     "existing_out": True}, ["nothing was written"]),
    "loss_overflows_at_start": ({"model": "linear", "data": _with(GOOD, x=X * 1e30)},
                                ["non-finite loss", "on the initial weights", "nothing was written"]),
    # 3. tracebacks: the model factory
    "factory_not_a_module": ({"model": "not_a_module"}, ["type int", "nn.Module"]),
    "factory_raises": ({"model": "raises"}, ["ValueError", "the factory fails"]),
    "factory_not_callable": ({"model": "NOT_CALLABLE"}, ["not callable"]),
    "factory_no_parameters": ({"model": "no_parameters"}, ["no trainable parameters"]),
    "factory_nan_weights": ({"model": "nan_weights"}, ["0.weight", "non-finite"]),
    "model_returns_tuple": ({"model": "tuple_output"}, ["tuple"]),
    "model_not_vmappable_zo": ({"model": "branchy", "oracle": "zo"}, ["vmap", "--oracle fo"]),
    "model_not_differentiable_fo": ({"model": "detached"}, ["fine-tuning the model failed", "differentiable"]),
    "model_rejects_x": ({"data": {"x": _x(10, 3), "y": torch.zeros(10, 1)}}, ["cannot take x of shape [10, 3]"]),
    # --out
    "out_folder_missing": ({"out": lambda ws: str(ws / "nope" / "tuned.pt")}, ["nope", "does not exist"]),
    "out_is_a_folder": ({"out": lambda ws: str(ws)}, ["is a folder"]),
    # --weights
    "weights_list": ({"weights": lambda ws: _save([1, 2, 3], ws / "w.pt")}, ["state dict"]),
    "weights_not_tensors": ({"weights": lambda ws: _save({"0.weight": "abc"}, ws / "w.pt")}, ["state dict"]),
    "weights_unreadable": ({"weights": lambda ws: _garbage(ws / "w.pt")}, ["unreadable"]),
    "weights_missing": ({"weights": lambda ws: str(ws / "missing.pt")}, ["no such file"]),
    "weights_wrong_model": ({"weights": lambda ws: _save(factories.classifier().state_dict(), ws / "w.pt")},
                            ["does not fit", "0.weight is [8, 2] in the file but [8, 1]"]),
    "weights_nan": ({"weights": lambda ws: _save(_nan_state(), ws / "w.pt")}, ["0.weight", "non-finite"]),
    # --data
    "data_x_list": ({"data": _with(GOOD, x=X.tolist())}, ["x is a list"]),
    "data_y_string": ({"data": _with(GOOD, y="sin")}, ["y is a str"]),
    "data_x_complex": ({"data": _with(GOOD, x=X.to(torch.complex64))}, ["x", "complex64"]),
    "data_x_bool": ({"data": _with(GOOD, x=X > 0)}, ["x", "torch.bool"]),
    "data_y_bool": ({"data": _with(GOOD, y=X > 0)}, ["y", "torch.bool"]),
    "data_npz_strings": ({"data": lambda ws: _npz_strings(ws / "data.npz")}, ["x", "not numbers"]),
    "data_not_a_dict": ({"data": lambda ws: _save([X, X], ws / "data.pt")}, ["dict"]),
    "data_missing": ({"data": lambda ws: str(ws / "missing.pt")}, ["no such file"]),
    # --steps
    "steps_negative": ({"steps": "-1"}, ["--steps -1"]),
    "steps_zero": ({"steps": "0"}, ["--steps 0"]),
    "steps_absurd": ({"steps": "100000000"}, ["--steps 100000000"]),
    # the run directory
    "run_missing": ({"run": lambda ws: str(ws / "no-run")}, ["no run directory"]),
    "run_not_a_run": ({"run": lambda ws: str(ws)}, ["config.toml"]),
    "run_alfa_for_another_architecture": ({"run": "alfa"}, ["per-layer meta-parameters"]),
}


def _command(ws: Path, runs: dict, spec: dict) -> list[str]:
    def value(v):
        return v(ws) if callable(v) else v

    data = spec.get("data", GOOD)
    data_path = value(data) if callable(data) else _save(data, ws / "data.pt")
    run = spec.get("run", "lft")
    argv = ["finetune", str(runs[run]) if run in runs else value(run),
            "--model", f"tests.finetune_factories:{spec.get('model', 'good')}", "--data", data_path,
            "--steps", spec.get("steps", "2"), "--out", value(spec.get("out", str(ws / "tuned.pt")))]
    for flag in ("weights", "oracle", "loss"):
        if flag in spec:
            argv += [f"--{flag}", value(spec[flag])]
    if spec.get("existing_out"):
        (ws / "tuned.pt").write_bytes(b"the user's earlier result")
    return argv


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_finetune_fails_cleanly(name, runs, tmp_path):
    spec, texts = CASES[name]
    argv = _command(tmp_path, runs, spec)
    res = assert_clean_failure(argv, watch=tmp_path, match=texts[0])
    for text in texts[1:]:
        assert text.lower() in res.err.lower(), f"{text!r} not in {res.err!r}"
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))
    if not spec.get("existing_out"):
        assert not (tmp_path / "tuned.pt").exists()


def test_failed_write_leaves_no_partial_or_temp_file(runs, tmp_path, monkeypatch):
    """The disk fills up half-way through writing --out: the old file keeps its bytes, no temporary file stays."""
    torch.save(GOOD, tmp_path / "data.pt")
    (tmp_path / "tuned.pt").write_bytes(b"the user's earlier result")

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    assert_clean_failure(["finetune", runs["lft"], "--model", "tests.finetune_factories:good", "--data",
                          tmp_path / "data.pt", "--steps", "2", "--out", tmp_path / "tuned.pt"],
                         watch=tmp_path, match="nothing was written")


def test_matching_shapes_report_the_true_mse(runs, tmp_path):
    """The reported initial loss is F.mse_loss(model(x), y) on the factory's weights; --out is replaced atomically."""
    torch.save(GOOD, tmp_path / "data.pt")
    (tmp_path / "tuned.pt").write_bytes(b"the user's earlier result")
    res = run_cli(["finetune", runs["lft"], "--model", "tests.finetune_factories:good", "--data",
                   tmp_path / "data.pt", "--steps", "3", "--out", tmp_path / "tuned.pt"])
    assert res.code == 0, res.err
    report = json.loads(res.out)
    model = factories.good()
    with torch.no_grad():
        expected = F.mse_loss(model(GOOD["x"]), GOOD["y"]).item()
    assert report["initial_loss"] == pytest.approx(expected, rel=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.pt", "tuned.pt"]  # no temporary file left
    model.load_state_dict(torch.load(tmp_path / "tuned.pt", weights_only=True))
    with torch.no_grad():
        assert F.mse_loss(model(GOOD["x"]), GOOD["y"]).item() == pytest.approx(report["final_loss"], rel=1e-5)
    assert report["final_loss"] != pytest.approx(report["initial_loss"], rel=1e-9)  # it did fine-tune


def test_matching_shapes_report_the_true_cross_entropy_npz(runs, tmp_path):
    """Integer classes from an .npz (float64 x, whole-number float labels) are converted, not refused."""
    np.savez(tmp_path / "data.npz", x=XC.double().numpy(), y=LABELS.double().numpy())
    res = run_cli(["finetune", runs["lft"], "--model", "tests.finetune_factories:classifier", "--data",
                   tmp_path / "data.npz", "--loss", "cross_entropy", "--steps", "2", "--out", tmp_path / "tuned.pt"])
    assert res.code == 0, res.err
    with torch.no_grad():
        expected = F.cross_entropy(factories.classifier()(XC), LABELS).item()
    assert json.loads(res.out)["initial_loss"] == pytest.approx(expected, rel=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "tuned.pt"]


def test_api_refuses_broadcasting_and_keeps_the_model_when_it_diverges(runs):
    rule = load_fine_tuner(runs["lft"])
    model = factories.good()
    with pytest.raises(UserError, match=r"\[10, 1\].*\[10\]"):
        finetune(model, X, torch.sin(X).squeeze(1), rule, steps=2)
    model = factories.linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match="non-finite loss"):
        finetune(model, X * 2e19, torch.sin(X), rule, steps=20)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_non_finite_weights_with_a_finite_loss_are_refused():
    """A weight the loss does not see turns NaN: the loss stays finite, the result is still refused."""
    from innerloop.errors import DivergenceError
    from innerloop.finetune import finetune_params
    from innerloop.rules.base import UpdateRule

    class Poison(UpdateRule):
        def forward(self, params, grads, state, step):
            return {**params, "b": params["b"] * float("nan")}, state, {}

    params = {"a": torch.ones(2), "b": torch.ones(2)}
    with pytest.raises(DivergenceError, match=r"non-finite weights \(b\)"):
        finetune_params(params, lambda p: (p["a"] ** 2).sum(), Poison(), steps=2)
    assert torch.equal(params["b"], torch.ones(2))
