"""The reproduction command: rows, resume of finished rows, results.json shape."""

import json

from innerloop.cli import main
from innerloop.reproduce.alfa_sinusoid import PAPER, rows_for


def test_rows_cover_the_table():
    rows = rows_for("paper", "cpu")
    main = [r for r in rows if r.extra["table"] == "main"]
    assert {(r.method, r.setting["network"], r.setting["shots"]) for r in main} == {
        (m, n, k) for m in ("MAML", "ALFA+MAML", "ALFA+Random", "robust ALFA+MAML") for n in ("2x40", "3x80")
        for k in (5, 10, 20)
    }
    assert all(r.paper == PAPER[(r.method, r.setting["network"])][r.setting["shots"]] for r in main
               if r.method in ("MAML", "ALFA+MAML"))
    assert all(r.paper is None for r in main if r.method not in ("MAML", "ALFA+MAML"))
    assert len([r for r in rows if r.extra["table"] == "5step"]) == 18
    assert len({r.id for r in rows}) == len(rows)
    robust = [r for r in rows if r.method == "robust ALFA+MAML"]
    assert {r.id for r in robust} >= {"5step-alfa-maml-robust-2x40-k5", "main-alfa-maml-robust-3x80-k20"}
    # the robust rows change the form only: no per-row clipping, the shared plain protocol
    assert all('rule.form="robust"' in r.overrides and not any("clip_grad" in o for o in r.overrides) for r in robust)


def test_smoke_rows_write_results_and_are_not_rerun(tmp_path, capsys):
    out = tmp_path / "rep"
    args = ["reproduce", "alfa-sinusoid", "--budget", "smoke", "--out", str(out), "--only", "main-maml-2x40-k5,main-alfa-maml-2x40-k5"]
    assert main(args) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["name"] == "alfa-sinusoid" and report["budget"] == "smoke"
    assert {r["method"] for r in report["rows"]} == {"MAML", "ALFA+MAML"}
    for r in report["rows"]:
        assert set(r) >= {"method", "setting", "metric", "mean", "ci95", "tasks", "paper"}
        assert r["setting"] == {"network": "2x40", "shots": 5, "steps": 1} and r["metric"] == "mse"
        assert r["paper"] in (1.24, 0.92) and r["tasks"] == 100 and r["iterations"] == 60
    md = (out / "results.md").read_text()
    assert "hardware" in report and f"{report['rows'][0]['mean']:.3f}" in md
    stamp = (out / "runs" / "main-maml-2x40-k5" / "result.json").stat().st_mtime_ns
    assert main(args) == 0  # finished rows are kept, not retrained
    assert (out / "runs" / "main-maml-2x40-k5" / "result.json").stat().st_mtime_ns == stamp


def test_unknown_budget_and_name(tmp_path):
    assert main(["reproduce", "alfa-sinusoid", "--budget", "huge", "--out", str(tmp_path)]) == 2
    assert main(["reproduce", "nope", "--budget", "smoke", "--out", str(tmp_path)]) == 2


def test_a_diverged_row_is_recorded_and_the_table_still_written(tmp_path, monkeypatch):
    import innerloop.train as train_mod
    from innerloop.errors import DivergenceError

    def diverge(*args, **kwargs):
        raise DivergenceError("meta-training diverged: the meta-loss rose; lower train.meta_lr")

    monkeypatch.setattr(train_mod, "train", diverge)
    out = tmp_path / "rep"
    args = ["reproduce", "alfa-sinusoid", "--budget", "smoke", "--out", str(out), "--only", "5step-alfa-maml-2x40-k5"]
    assert main(args) == 0
    assert json.loads((out / "runs" / "5step-alfa-maml-2x40-k5" / "diverged.json").read_text())["id"] == "5step-alfa-maml-2x40-k5"
    assert "| 2x40 | ALFA+MAML | diverged |" in (out / "results.md").read_text()
