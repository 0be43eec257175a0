"""The LFT sinusoid reproduction's rows and report (issue 23): the stable fine-tuners beside the papers' form,
stability past the horizon, paired differences and ZO/FO, from synthetic rows (no training)."""

import random

from innerloop import config
from innerloop.reproduce import lft_sinusoid


def test_stable_rows_add_the_issue_23_settings_to_their_papers_form_row():
    rows = {r.id: r for r in lft_sinusoid.rows_for("paper", "cpu")}
    assert sorted(rows) == sorted([f"{m}-{o}" for o in ("fo", "zo") for m in
                                   ("lft", "l2o", "maml", "lft-stable", "l2o-stable", "lft-adam", "l2o-adam")]
                                  + ["lft-oa50-zo"])
    for oracle in ("fo", "zo"):
        for m in ("lft", "l2o"):
            plain, stable = rows[f"{m}-{oracle}"], rows[f"{m}-stable-{oracle}"]
            assert stable.method == plain.method + " (stable)"
            assert stable.overrides == [o for o in plain.overrides if o != 'oracle.noise="stream"'] + lft_sinusoid.STABLE
            cfg = config.load(stable.config, stable.overrides)
            assert (cfg.rule.max_update, cfg.rule.descent, cfg.train.horizon, cfg.train.truncation) == (0.1, True, 100, 20)
            assert cfg.oracle.noise == "keyed" and config.load(plain.config, plain.overrides).oracle.noise == "stream"
            assert max(stable.record) == 200
            adam = rows[f"{m}-adam-{oracle}"]
            assert adam.method == plain.method + " (adam)" and max(adam.record) == 200
            assert adam.overrides == [o for o in plain.overrides if o != 'oracle.noise="stream"'] + lft_sinusoid.ADAM
            cfg = config.load(adam.config, adam.overrides)
            assert (cfg.rule.output, cfg.rule.head_init_scale, cfg.train.horizon, cfg.train.truncation) == ("adam", 0.0, 100, 20)
            assert cfg.objective.kind == config.load(plain.config, plain.overrides).objective.kind


def test_structured_zeroth_order_row_is_the_papers_form_with_the_screened_estimator():
    rows = {r.id: r for r in lft_sinusoid.rows_for("paper", "cpu")}
    row, plain = rows["lft-oa50-zo"], rows["lft-zo"]
    assert row.overrides == [o for o in plain.overrides if o != 'oracle.noise="stream"'] + lft_sinusoid.STRUCTURED
    cfg = config.load(row.config, row.overrides)
    assert (cfg.oracle.kind, cfg.oracle.q, cfg.oracle.directions, cfg.oracle.antithetic) == ("zo", 50, "orthogonal", True)
    assert cfg.oracle.noise == "keyed" and cfg.train.horizon == config.load(plain.config, plain.overrides).train.horizon
    results = [_row(m, o, 2.0, 0.1) for m, o in [("LFT", "fo"), ("LFT", "zo"), (lft_sinusoid.STRUCTURED_METHOD, "zo")]]
    text = lft_sinusoid.comparisons(results)
    assert any(l.startswith(f"| {lft_sinusoid.STRUCTURED_METHOD} | ") and "| 101 (" in l for l in text)


def _row(method, oracle, level, slope):
    rng = random.Random(f"{method}|{oracle}")  # str seeds are stable across processes
    by = []
    for s in [0, *lft_sinusoid.STEPS]:
        values = [max(0.0, level * (1 + slope * s / 20) + rng.gauss(0, 0.05)) for _ in range(50)]
        by.append({"steps": s, "mean": sum(values) / 50, "ci95": 0.01, "std": 0.05, "values": values})
    return {"method": method, "setting": {"oracle": oracle}, "tasks": 50, "by_steps": by}


def test_report_says_which_rows_stay_stable_and_orders_them_paired(tmp_path):
    results = [_row(m, o, lvl, sl) for o in ("fo", "zo") for m, lvl, sl in
               [("LFT", 2.0, 1.0), ("L2O", 2.5, 1.0), ("MAML", 1.0, -0.01), ("LFT (stable)", 1.5, -0.02),
                ("L2O (stable)", 2.2, -0.02), ("LFT (adam)", 1.2, -0.03), ("L2O (adam)", 1.3, -0.03)]]
    info = {"hardware": "test", "train_wall_s": 60.0}
    lft_sinusoid.write_markdown(tmp_path, results, "smoke", info)
    text = (tmp_path / "results.md").read_text()
    assert "| FO | LFT (stable) | " in text and "| yes |" in text and "| no |" in text
    stable_lines = [l for l in text.splitlines() if "stable past 20" not in l and l.startswith("| FO | LFT (stable) | ")
                    and l.endswith("| yes |")]
    assert len(stable_lines) == 1
    diff = next(l for l in text.splitlines() if l.startswith("| FO | LFT (stable) − L2O (stable) |"))
    assert diff.count(" *") == 3 and abs(float(diff.split(" | ")[2].split()[0]) + 0.7 * 0.98) < 0.05  # (1.5 - 2.2) x 0.98 at 20 steps
    zo_fo = text.split("## Zeroth- against first-order LFT")[1]
    assert "| LFT (stable) | " in zo_fo and "| LFT (adam) | " in zo_fo
    diff = next(l for l in text.splitlines() if l.startswith("| ZO | LFT (adam) − L2O (adam) |"))
    assert diff.count(" *") == 3  # 1.2 vs 1.3 over the same 50 tasks, noise 0.05 per task
    lft_sinusoid.plot(results, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
