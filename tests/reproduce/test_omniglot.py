"""The Omniglot reproduction: rows cover the table, a smoke row trains and evaluates on real Omniglot."""

import json
import os
from pathlib import Path

import pytest

from innerloop.cli import main
from innerloop.reproduce.omniglot import LONGER_TEST_STEPS, METHODS, PAPER, PROTOCOLS, SETTINGS, rows_for

SHARED = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))


def test_rows_cover_the_table_for_every_budget():
    for budget in PROTOCOLS:
        rows = rows_for(budget, "cpu")
        assert {(r.method, f"{r.setting['ways']}w{r.setting['shots']}s") for r in rows} == {
            (m, s) for m in METHODS for s in SETTINGS}
        assert len({r.id for r in rows}) == len(rows) == 27
        assert all(r.paper == PAPER.get((r.method, f"{r.setting['ways']}w{r.setting['shots']}s")) for r in rows)
    assert sum(r.paper is not None for r in rows_for("cpu", "cpu")) == 3  # MAML 98.7 / 99.9 / 95.8


def test_robust_alfa_rows_carry_their_form_and_schedule():
    (row,) = [r for r in rows_for("cpu", "cpu") if r.id == "5w1s-alfa-maml-robust"]
    assert row.config == "omniglot/alfa-maml" and row.method == "robust ALFA+MAML"
    assert 'rule.form="robust"' in row.overrides and 'rule.schedule="state"' in row.overrides
    assert "5w1s-alfa-maml" in {r.id for r in rows_for("cpu", "cpu")}  # the paper form keeps its id
    (shared,) = [r for r in rows_for("cpu", "cpu") if r.id == "5w1s-alfa-maml-shared"]
    assert 'rule.kind="alfa_shared"' in shared.overrides
    (relative,) = [r for r in rows_for("cpu", "cpu") if r.id == "5w1s-alfa-maml-shared-relative"]
    assert relative.overrides == shared.overrides + ["rule.relative=true"]
    metal = {r.id: r for r in rows_for("smoke", "cpu") if r.method.startswith("MeTAL")}
    assert set(metal) == {f"{s}-metal{a}" for s in SETTINGS for a in ("", "-alfa")}
    for r in metal.values():  # the learned loss needs second order, even where the budget trains first order
        assert r.overrides[-1] == 'inner.order="second"' and 'inner.order="first"' in r.overrides


def test_alfa_rows_test_with_their_trained_steps():
    # the paper budget tests MAML with 10 steps (the authors' code) but ALFA with the steps it trained
    for r in rows_for("paper", "cpu"):
        trained = r.setting["steps"]
        assert r.setting["eval_steps"] == (trained if r.method.startswith(("ALFA", "MeTAL")) else 10), r.id
        assert f"eval.steps={r.setting['eval_steps']}" in r.overrides
        assert r.evals == {"longer": {"steps": LONGER_TEST_STEPS}} or r.setting["eval_steps"] == LONGER_TEST_STEPS
    # the cpu budget tests every method with the one trained step
    assert {r.setting["eval_steps"] for r in rows_for("cpu", "cpu")} == {1}


@pytest.mark.skipif(not (SHARED / "omniglot" / "images_background.zip").is_file(), reason="shared Omniglot data not present")
def test_smoke_row_on_real_omniglot(tmp_path, monkeypatch):
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rep"
    args = ["reproduce", "omniglot", "--budget", "smoke", "--out", str(out), "--data", str(SHARED), "--only", "5w1s-maml-l2f"]
    assert main(args) == 0
    report = json.loads((out / "results.json").read_text())
    (row,) = report["rows"]
    assert row["method"] == "MAML+L2F" and row["metric"] == "accuracy" and row["tasks"] == 40
    assert row["setting"] == {"ways": 5, "shots": 1, "steps": 1, "eval_steps": 1, "filters": 8}
    assert 0.0 <= row["mean"] <= 100.0
    assert row["evals"]["longer"]["steps"] == LONGER_TEST_STEPS and 0.0 <= row["evals"]["longer"]["mean"] <= 100.0
    md = (out / "results.md").read_text()
    assert md.count("| MAML+L2F |") == 2 and f"After {LONGER_TEST_STEPS} test steps" in md


def test_missing_data_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("INNERLOOP_DATA", raising=False)
    assert main(["reproduce", "omniglot", "--budget", "smoke", "--out", str(tmp_path), "--only", "5w1s-maml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "INNERLOOP_DATA" in err
