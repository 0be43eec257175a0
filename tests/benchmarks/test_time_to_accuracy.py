"""benchmarks/time_to_accuracy.py end to end on a tiny sinusoid budget: curve, summary, plot, resume."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "time_to_accuracy.py"
FAST = ["--set", "train.meta_batch=4", "--set", "inner.steps=2", "--set", "eval.tasks=20", "--set", "model.hidden=[8, 8]",
        "--set", "train.log_every=5", "--set", "train.checkpoint_every=5"]


def run(out, *extra):
    res = subprocess.run([sys.executable, str(SCRIPT), "sinusoid/maml", "--out", str(out), "--eval-every", "5",
                          "--targets", "100,0.0001", *FAST, *extra], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_curve_summary_and_plot(tmp_path):
    out = run(tmp_path / "b", "--iterations", "10")
    curve = [json.loads(l) for l in (tmp_path / "b" / "curve.jsonl").read_text().splitlines()]
    assert [p["iteration"] for p in curve] == [5, 10]
    assert all(p["metric"] == "mse" and p["train_s"] > 0 and p["eval_s"] > 0 and p["tasks"] == 20 for p in curve)
    assert curve[0]["train_s"] < curve[1]["train_s"]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["iterations"] == 10 and summary["eval_split"] == "test"
    # MSE: lower is better; 100 is met at the first evaluation, 1e-4 never
    assert summary["targets"]["100.0"]["iteration"] == 5 and summary["targets"]["0.0001"] is None
    assert "target 0.0001: not reached" in out
    assert (tmp_path / "b" / "curve.png").stat().st_size > 1000
    # rerun with a larger budget: resumes from the checkpoint, the curve grows
    run(tmp_path / "b", "--iterations", "15")
    curve = [json.loads(l) for l in (tmp_path / "b" / "curve.jsonl").read_text().splitlines()]
    assert [p["iteration"] for p in curve] == [5, 10, 15]
