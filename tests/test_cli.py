"""The command line: one-line errors with exit code 2, JSON evaluation output, shipped configs."""

import json
import re
import subprocess
import sys

import pytest

from innerloop import config
from innerloop.cli import main
from innerloop.errors import ConfigError

FAST = ["--set", "train.iterations=4", "--set", "train.meta_batch=3", "--set", "eval.tasks=10",
        "--set", "model.hidden=[8]", "--set", "inner.steps=1", "--quiet"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "innerloop.cli", *args], capture_output=True, text=True)


def assert_one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("innerloop: error:"), proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_train_prints_a_short_table_and_json_on_request(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "sinusoid/maml", "--out", str(out), "--quiet", *FAST]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("trained 4 iterations in ") and lines[0].endswith(f"-> {out}")
    assert re.fullmatch(r"test MSE \d+\.\d{4} ± \d+\.\d{4} \(95% CI over 10 tasks, 1 step\)", lines[1]), lines[1]
    assert main(["eval", str(out), "--tasks", "3", "--steps", "2"]) == 0
    assert re.fullmatch(r"test MSE \S+ ± \S+ \(95% CI over 3 tasks, 2 steps\)\n", capsys.readouterr().out)


def test_format_result_names_percent_metrics_and_singulars():
    from innerloop.evaluate import format_result

    assert format_result({"metric": "accuracy", "mean": 95.95556, "ci95": 0.3812, "tasks": 600, "steps": 1}) == \
        "test accuracy 95.96% ± 0.38 (95% CI over 600 tasks, 1 step)"
    text = format_result({"metric": "asr", "mean": 69.0, "ci95": 2.0, "tasks": 1, "steps": 20,
                          "extra": {"rms": {"mean": 0.19, "ci95": 0.01}}})
    assert text == "test attack success rate 69.00% ± 2.00 (95% CI over 1 task, 20 steps)\n  rms 0.1900 ± 0.0100"


def test_train_then_eval_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "sinusoid/maml", "--out", str(out), "--json", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert "values" not in summary and summary["tasks"] > 0  # a one-line summary, not hundreds of scores
    assert main(["eval", str(out), "--tasks", "7", "--steps", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"metric", "mean", "ci95", "tasks", "values"}
    assert res["tasks"] == 7 and res["steps"] == 3 and res["metric"] == "mse" and len(res["values"]) == 7


def test_testing_past_the_trained_steps_is_one_line_note(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "sinusoid/alfa-maml", "--out", str(out), *FAST).returncode == 0
    quiet = run_cli("eval", str(out), "--tasks", "3", "--json")
    assert quiet.returncode == 0 and quiet.stderr == ""
    proc = run_cli("eval", str(out), "--tasks", "3", "--steps", "4", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["steps"] == 4
    assert proc.stderr.strip().splitlines() == [
        "innerloop: the rule's per-step meta-parameters exist for 1 step(s); test steps beyond them reuse step 1's "
        "(evaluate with --steps 1 to test as trained)"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "train.bogus=1"], "unknown key 'train.bogus'"),
        (["--set", "inner.steps=\"five\""], "'inner.steps' in --set must be int"),
        (["--set", "inner.steps=0"], "inner.steps = 0"),
        (["--set", "rule.kind=\"adam\""], "'rule.kind' = 'adam' is not one of"),
        (["--set", "nosection"], "section.key=value"),
        (["--set", "task.shots=0"], "task.shots"),
        (["--set", "train.iteratons=3"], "unknown key 'train.iteratons' in --set; did you mean 'train.iterations'?"),
        (["--set", "task.ways=10000"], 'task.ways applies to task.family = "episodes", "records", "incongruous" or "uap"'),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, args, fragment):
    assert_one_line_error(run_cli("train", "sinusoid/alfa-maml", "--out", str(tmp_path / "r"), *args), fragment)


def test_unknown_config_name_and_bad_file(tmp_path):
    assert_one_line_error(run_cli("train", "nope/none", "--out", str(tmp_path / "r")), "no config file")
    assert_one_line_error(run_cli("train", "sinusoid/alfa-mam", "--out", str(tmp_path / "r")),
                          "did you mean 'sinusoid/alfa-maml'? ('innerloop configs' lists all)")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\niterations = [1,\n")
    assert_one_line_error(run_cli("train", str(bad), "--out", str(tmp_path / "r")), "not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[trainer]\niterations = 3\n")
    assert_one_line_error(run_cli("train", str(unknown), "--out", str(tmp_path / "r")), "unknown section [trainer]")


def test_missing_and_corrupt_checkpoint(tmp_path):
    assert_one_line_error(run_cli("eval", str(tmp_path / "nothing")), "no run directory")
    out = tmp_path / "run"
    assert main(["train", "sinusoid/maml", "--out", str(out), "--no-eval", *FAST]) == 0
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    assert_one_line_error(run_cli("eval", str(out)), "corrupt")
    (out / "checkpoint.pt").unlink()
    assert_one_line_error(run_cli("eval", str(out)), "no checkpoint")


def test_vmap_with_builtin_norm_is_refused():
    from innerloop.engine import Learner, choose_mode
    from innerloop.models import Conv4

    with pytest.raises(ConfigError, match="executor"):
        choose_mode(Learner(Conv4(1, 2, 4, 16, norm="torch"), "cross_entropy"), "cpu", "vmap")


def test_every_shipped_config_loads():
    names = config.list_shipped()
    assert {"sinusoid/maml", "sinusoid/alfa-maml", "sinusoid/alfa-random"} <= set(names)
    for n in names:
        config.load(n)


def test_config_round_trip():
    cfg = config.load("sinusoid/alfa-random", ["eval.steps=7", "model.hidden=[3, 4]"])
    again = config.apply(config.Config(), config.tomllib.loads(config.to_toml(cfg)))
    assert again == cfg
