"""ALFA Table 3 (alfa-meta-dataset) and the CPU-sized cross-domain table (meta-dataset-mini): rows, the one-line
instruction without records, and the paired comparisons of the report."""

import pytest

from innerloop import config
from innerloop.errors import UserError
from innerloop.reproduce import alfa_meta_dataset, meta_dataset_mini, run_reproduction


def test_table_3_needs_records_and_says_how_to_convert_them(tmp_path, monkeypatch):
    monkeypatch.delenv("INNERLOOP_RECORDS", raising=False)
    monkeypatch.delenv("INNERLOOP_DATA", raising=False)
    with pytest.raises(UserError, match="records are needed: convert the sources") as e:
        run_reproduction("alfa-meta-dataset", "paper", str(tmp_path))
    assert "\n" not in str(e.value)
    monkeypatch.setenv("INNERLOOP_RECORDS", str(tmp_path))
    with pytest.raises(UserError, match="lacks ilsvrc_2012"):
        run_reproduction("alfa-meta-dataset", "paper", str(tmp_path))


def test_table_3_rows_are_the_shipped_configs_with_the_reference_settings():
    rows = {r.method: r for r in alfa_meta_dataset.rows_for("paper", "cpu")}
    assert list(rows) == list(alfa_meta_dataset.METHODS)
    cfgs = {m: config.load(r.config, r.overrides) for m, r in rows.items()}
    assert cfgs["fo-MAML"].rule.lr == 0.09915 and cfgs["fo-MAML"].eval.steps == 15
    assert cfgs["fo-Proto-MAML"].init.proto and cfgs["fo-Proto-MAML+ALFA"].init.proto
    assert cfgs["fo-Proto-MAML"].rule.lr == 0.005435 and cfgs["fo-Proto-MAML"].inner.steps == 6
    assert all(c.inner.order == "first" and c.train.meta_batch == 1 and c.task.ways == 0 for c in cfgs.values())
    assert set(rows["fo-MAML"].evals) == set(alfa_meta_dataset.SOURCES)


def test_mini_rows_shrink_only_the_costly_settings():
    rows = {r.method: config.load(r.config, r.overrides) for r in meta_dataset_mini.rows_for("cpu", "cpu")}
    for method, c in rows.items():
        assert c.task.sources == ["omniglot"] and c.task.eval_sources == ["omniglot", "mnist", "cifar10"]
        assert c.model.name == "conv4" and c.task.max_ways == 20 and c.train.iterations == 1500
        assert (c.rule.form, c.rule.schedule) == ("robust", "state") if "ALFA" in method else c.rule.kind == "sgd"
    assert rows["fo-MAML"].train.lr_decay_every == 200 and rows["fo-Proto-MAML"].train.lr_decay_every == 50


def fake(method, values):
    return {"method": method, "evals": {s: {"mean": sum(values) / len(values), "ci95": 1.0, "values": values}
                                        for s in meta_dataset_mini.SOURCES}}


def test_mini_report_pairs_the_methods_on_the_same_episodes(tmp_path):
    results = [fake("fo-Proto-MAML+ALFA", [60.0, 70.0, 80.0]), fake("fo-Proto-MAML", [50.0, 70.0, 60.0]),
               fake("fo-MAML+ALFA", [60.0, 60.0, 60.0])]
    info = {"hardware": {"cpu": "x"}, "train_wall_s": 60.0}
    pairs = meta_dataset_mini.write_markdown(tmp_path, results, "cpu", info)
    first = [p for p in pairs if (p["a"], p["b"]) == ("fo-Proto-MAML+ALFA", "fo-Proto-MAML")]
    assert len(first) == 3 and first[0]["mean"] == pytest.approx(10.0)
    text = (tmp_path / "results.md").read_text()
    assert "| mnist (held out) |" in text and "| fo-Proto-MAML+ALFA − fo-Proto-MAML | +10.00" in text
    assert "—" in text  # fo-MAML has no result yet
