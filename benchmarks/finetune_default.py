"""The shipped fine-tuner against tuned Adam and SGD on problems it never saw (issue 23, part 3).

    python benchmarks/finetune_default.py [--tuner default] [--data DIR] [--methods tuner,adam,sgd]
    python benchmarks/finetune_default.py --validate --tuner RUN_DIR      (choose between tuners: validation only)

Five held-out problem families, each fine-tuned from a fresh random initialisation per task (PyTorch's default
init, the same draws for every method):

* ``omniglot-test``: Omniglot 2-way 5-shot on the test alphabets (the tuner saw only the training alphabets),
  MLP 784-32-2; validation tasks from the validation alphabets.
* ``mnist-789`` / ``cifar10-789``: 2-way 5-shot tasks of MNIST digits / CIFAR-10 classes 7, 8, 9 (kept out of
  the tuner's meta-training), MLP 784-32-2 / 4-conv CNN (8 filters); test tasks take support images from the
  training split and query images from the test split; validation tasks take both from the training split.
* ``sinusoid-wide``: sinusoids with amplitude in [5, 10] and frequency in [1.2, 1.6] (the tuner saw [0.1, 5]
  and [0.8, 1.2]), 10 points, MLP 1-40-40-1.
* ``sinusoid-deep``: in-range sinusoids with an architecture the tuner never saw: MLP 1-64-64-64-1, tanh.

Adam's and SGD's learning rates are chosen per family from a grid, by the mean query loss after 100 steps on
``--val-tasks`` validation tasks (never the test tasks); then every method is scored on ``--tasks`` fixed test tasks
after 0, 10, 100 and 1,000 steps (query loss, and accuracy for classifiers). Per-run scores are cached in
``OUT/scores.jsonl`` (rerunning resumes; a tuner's scores are keyed by a digest of its meta-parameters, so a
retrained tuner is scored afresh); ``OUT/results.md`` and ``OUT/figure.png`` are written from them.

``--validate`` scores the tuner on the validation tasks only (after 10 and 100 steps) and prints it beside the
best Adam and SGD of each family's validation grid: candidate tuners are compared there, never on test tasks.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MARKS = [0, 10, 100, 1000]
GRIDS = {"adam": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1], "sgd": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0]}
TEST_SEED, VAL_SEED = 2020, 7
FAMILIES = ["omniglot-test", "mnist-789", "cifar10-789", "sinusoid-wide", "sinusoid-deep"]


def family(name: str, data: str):
    """``(learner, init, validation batch, test batch)`` of a held-out family, and its description."""
    import os

    from innerloop import config as C
    from innerloop.build import _classes, _load, build_source_learner
    from innerloop.engine import Learner
    from innerloop.inits import RandomInit
    from innerloop.models import MLP
    from innerloop.tasks import EpisodeTasks, SinusoidTasks

    os.environ["INNERLOOP_DATA"] = data
    cfg = C.load("tuners/default")
    t = cfg.task
    if name.startswith("sinusoid"):
        wide = name == "sinusoid-wide"
        tasks = SinusoidTasks(shots=10, query=30, amplitude=(5.0, 10.0) if wide else (0.1, 5.0),
                              frequency=(1.2, 1.6) if wide else (0.8, 1.2))
        model = MLP(1, [40, 40], 1, "relu") if wide else MLP(1, [64, 64, 64], 1, "tanh")
        learner = Learner(model, "mse")
        val, test = tasks.eval_set(VAL_TASKS, VAL_SEED, 30), tasks.eval_set(N_TASKS, TEST_SEED, 30)
        return learner, RandomInit(model, "torch"), val, test
    source = name.split("-")[0]
    if source == "omniglot":
        train = _load(cfg, "omniglot", "", "train")
        val_tasks = EpisodeTasks(train, t.ways, t.shots, 1, _load(cfg, "omniglot", "", "val"), t.eval_query)
        test_tasks = EpisodeTasks(train, t.ways, t.shots, 1, _load(cfg, "omniglot", "", "test"), t.eval_query)
    else:
        keep = list(t.holdout_classes)
        train, test = _classes(_load(cfg, source, "", "train"), keep), _classes(_load(cfg, source, "", "test"), keep)
        val_tasks = EpisodeTasks(train, t.ways, t.shots, 1, train, t.eval_query)
        test_tasks = EpisodeTasks(train, t.ways, t.shots, 1, None, t.eval_query, query_data=test)
    spec = {"image_shape": list(test_tasks.image_shape), "ways": t.ways}
    model, learner = build_source_learner(cfg, source, spec)
    return (learner, RandomInit(model, "torch"), val_tasks.eval_set(VAL_TASKS, VAL_SEED),
            test_tasks.eval_set(N_TASKS, TEST_SEED))


def score(learner, init, rule, batch, steps: list[int], accuracy: bool = False) -> tuple[torch.Tensor, dict]:
    """Per-task query loss ``[tasks, len(steps)]`` after each of ``steps`` fine-tuning steps (and, with
    ``accuracy``, ``info["metric/accuracy"]`` from the same unroll)."""
    from innerloop.engine import Learner, MetaLearner
    from innerloop.oracles import AutogradOracle

    scorer = Learner(learner.model, learner.loss_name, metric="loss",
                     query_metrics={"accuracy": "accuracy"} if accuracy else None)
    meta = MetaLearner(scorer, init, rule, AutogradOracle("first"), steps=max(steps))
    with torch.no_grad():
        return meta.evaluate(batch, record=steps, seed=TEST_SEED, chunk=CHUNK)


def make_rule(method: str, lr: float | None, tuner: str):
    from innerloop.finetune import load_fine_tuner
    from innerloop.rules import SGD, Adam

    if method == "tuner":
        return load_fine_tuner(tuner)
    return Adam(lr) if method == "adam" else SGD(lr)


def tuner_tag(tuner: str) -> str:
    """``tuner:`` + the first 12 hex digits of the SHA-256 of the tuner's meta-parameters (keys the score cache)."""
    import hashlib

    from innerloop.finetune import load_fine_tuner

    state = load_fine_tuner(tuner).state_dict()
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().float().numpy().tobytes())
    return "tuner:" + h.hexdigest()[:12]


def mean_finite(v: torch.Tensor) -> float:
    m = float(v.mean())
    return m if math.isfinite(m) else float("inf")


def main() -> None:
    global N_TASKS, VAL_TASKS, CHUNK
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tuner", default="default", help="a shipped fine-tuner's name or a run folder")
    ap.add_argument("--data", default="/work/shared/data", help="folder holding omniglot/, mnist/, cifar10/")
    ap.add_argument("--methods", default="tuner,adam,sgd")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--tasks", type=int, default=50, help="test tasks per family")
    ap.add_argument("--val-tasks", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=25)
    ap.add_argument("--tuner-steps", type=int, default=1000,
                    help="score the LSTM only up to this many steps (it costs ~10-50 ms per task-step on a CPU)")
    ap.add_argument("--out", default=str(ROOT / "results/finetune-default"))
    ap.add_argument("--compare", default="", help="more tuners (names or run folders) whose cached test scores the "
                    "report shows beside --tuner's (score them first with --tuner NAME)")
    ap.add_argument("--label", default="", help="--validate: how the report names this tuner (default: --tuner)")
    ap.add_argument("--validate", action="store_true",
                    help="score the tuner on validation tasks only, beside the tuned Adam and SGD (choosing a tuner)")
    args = ap.parse_args()
    args.tag = tuner_tag(args.tuner)
    N_TASKS, VAL_TASKS, CHUNK = args.tasks, args.val_tasks, args.chunk
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "scores.jsonl"
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            done[r["key"]] = r

    def run(key: str, fn, force: bool = False) -> dict:
        if force or key not in done:
            t0 = time.perf_counter()
            r = {"key": key, **fn(), "seconds": round(time.perf_counter() - t0, 1)}
            with cache.open("a") as f:
                f.write(json.dumps(r) + "\n")
            done[key] = r
            shown = r["mean"] if "mean" in r else dict(zip(r.get("marks", MARKS), r["means"]))
            print(f"{key}: {shown} ({r['seconds']} s)", flush=True)
        return done[key]

    methods = args.methods.split(",")
    table = []
    for fam in args.families.split(","):
        learner, init, val, test = family(fam, args.data)
        classifier = learner.loss_name == "cross_entropy"
        metrics = ["loss", "accuracy"] if classifier else ["loss"]
        for method in methods:
            lr = None
            if method in GRIDS:
                for g in GRIDS[method]:
                    run(f"{fam}|{method}|{g}|val|loss", lambda: {
                        "mean": mean_finite(score(learner, init, make_rule(method, g, args.tuner), val, [100])[0][:, 0])})
                lr = min(GRIDS[method], key=lambda g: done[f"{fam}|{method}|{g}|val|loss"]["mean"])
            name = args.tag if method == "tuner" else method
            if args.validate:
                if method == "tuner":
                    r = run(f"{fam}|{name}|None|val|loss", lambda: {"label": args.label or args.tuner, "marks": [10, 100], "means": [
                        mean_finite(c) for c in score(learner, init, make_rule(method, lr, args.tuner), val, [10, 100])[0].T]})
                    table.append(f"{fam:14s} {args.tuner} ({name}): {r['means'][0]:.4g} / {r['means'][1]:.4g}")
                else:
                    table.append(f"{fam:14s} {method} lr {lr}: - / {done[f'{fam}|{method}|{lr}|val|loss']['mean']:.4g}")
                continue
            marks = MARKS if method in GRIDS else [m for m in MARKS if m <= args.tuner_steps]

            def summary(v: torch.Tensor) -> dict:
                return {"lr": lr, "marks": marks, "means": [mean_finite(v[:, i]) for i in range(len(marks))],
                        "ci95": [float(1.96 * v[:, i].std() / len(v) ** 0.5) for i in range(len(marks))],
                        "nonfinite": int((~torch.isfinite(v)).sum()), "values": v.tolist()}

            key = f"{fam}|{name}|{lr}|test"
            # a cached score with fewer marks (an earlier, shorter --tuner-steps) is recomputed; the later line wins
            stale = any(f"{key}|{m}" not in done or done[f"{key}|{m}"].get("marks", MARKS)[-1] < marks[-1] for m in metrics)
            if stale:
                t0 = time.perf_counter()
                v, info = score(learner, init, make_rule(method, lr, args.tuner), test, marks, classifier)
                print(f"{key}: scored in {time.perf_counter() - t0:.0f} s", flush=True)
                run(f"{key}|loss", lambda: summary(v), force=True)
                if classifier:
                    run(f"{key}|accuracy", lambda: summary(info["metric/accuracy"]), force=True)
    if args.validate:
        print(f"validation query loss after 10 / 100 steps ({args.val_tasks} tasks per family):")
        print("\n".join(table))
        return
    write_report(out, done, args)


def write_report(out: Path, done: dict, args) -> None:
    rows, fams = [], [f for f in FAMILIES if any(k.startswith(f + "|") for k in done)]
    lines = ["# The shipped fine-tuner (`--tuner default`) against tuned Adam and SGD on held-out problems", "",
             "Produced by `python benchmarks/finetune_default.py` (see its docstring for the five families). "
             f"{args.tasks} fixed test tasks per family, a fresh PyTorch-default random init per task (the same "
             "for every method), first-order gradients; Adam's and SGD's learning rates chosen per family by the "
             f"mean query loss after 100 steps on {args.val_tasks} validation tasks. Mean ± 95% CI over tasks.", "",
             "| family | method | lr | metric | " + " | ".join(f"{m} steps" for m in MARKS) + " | non-finite | ends above start |",
             "|---|---|---|---|" + "---|" * len(MARKS) + "---|---|"]
    tuners = [(args.tuner, args.tag)] + [(c, tuner_tag(c)) for c in args.compare.split(",") if c]
    for fam in fams:
        for method, (tname, tag) in [("tuner", t) for t in tuners] + [("adam", ("", "")), ("sgd", ("", ""))]:
            for metric in ("loss", "accuracy"):
                r = chosen(done, fam, method, metric, tag)
                if r is None:
                    continue
                at = dict(zip(r.get("marks", MARKS), zip(r["means"], r["ci95"])))
                cells = [("—" if s not in at else f"{100 * at[s][0]:.1f} ± {100 * at[s][1]:.1f}" if metric == "accuracy"
                          else f"{at[s][0]:.4g} ± {at[s][1]:.2g}" if math.isfinite(at[s][0]) else "inf") for s in MARKS]
                flags = " | " if metric != "loss" else (
                    f"{r['nonfinite']} | " + ("—" if r.get("marks", MARKS)[-1] != MARKS[-1] else
                                              "yes" if not r["means"][-1] <= r["means"][0] else "no"))
                name = {"tuner": f"LSTM ({tname})", "adam": "Adam", "sgd": "SGD"}[method]
                lines.append(f"| {fam} | {name} | {r['lr'] if r['lr'] is not None else '—'} | {metric} | "
                             + " | ".join(cells) + f" | {flags} |")
                rows.append((fam, method if method != "tuner" or tname == args.tuner else "other", metric, r, name))
    lines += validation_section(done, fams)
    lines += training_section(args.tuner)
    lines += ["", "*non-finite*: (task, step count) scores that were NaN or infinite (a diverged fine-tuning); *ends above "
              "start*: the mean query loss after 1,000 steps is above the untrained model's (over-fitting the 10 "
              "support examples, or drifting).", "", "![query loss against steps](figure.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    plot(out / "figure.png", rows, fams)


def validation_section(done: dict, fams: list[str]) -> list[str]:
    """The tuners screened with ``--validate``: validation query loss after 100 steps, beside tuned Adam's."""
    screened = {}
    for k, r in done.items():
        fam, tag, _, split, _ = k.split("|")
        if split == "val" and tag.startswith("tuner:"):
            screened.setdefault(tag, {})[fam] = r
    if not screened:
        return []
    adam = {f: min(done[k]["mean"] for g in GRIDS["adam"] if (k := f"{f}|adam|{g}|val|loss") in done) for f in fams}
    lines = ["", "## Tuners screened on validation tasks", "",
             f"Query loss after 100 steps on the {VAL_TASKS} validation tasks per family (`--validate`; the test tasks "
             "played no part in choosing the shipped tuner). Choice rule: most families at or below tuned Adam, then the "
             "lowest geometric mean of the ratio to tuned Adam.", "",
             "| tuner | digest | " + " | ".join(fams) + " | families <= Adam | geo-mean ratio to Adam |",
             "|---|---|" + "---|" * len(fams) + "---|---|"]
    for tag, per in screened.items():
        vals = [per[f]["means"][-1] if f in per else float("nan") for f in fams]
        ratios = [v / adam[f] for v, f in zip(vals, fams)]
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if all(x > 0 for x in ratios) else float("nan")
        label = next(iter(per.values())).get("label", tag)
        lines.append(f"| {label} | `{tag[6:]}` | " + " | ".join(f"{v:.4g}" for v in vals)
                     + f" | {sum(x <= 1 for x in ratios)} of {len(fams)} | {geo:.3f} |")
    lines.append("| tuned Adam (per family) | — | " + " | ".join(f"{adam[f]:.4g}" for f in fams) + f" | — | 1 |")
    return lines


def training_section(tuner: str) -> list[str]:
    """How a shipped tuner was meta-trained, from its manifest (nothing for a run folder)."""
    from innerloop import pretrained

    if tuner not in pretrained.available():
        return []
    m = pretrained.manifest(tuner)
    return ["", f"## How `{tuner}` was meta-trained", "",
            f"Config `{m['config']}` (`innerloop configs {m['config']}` prints it with every key explained), "
            f"{m['iterations']} meta-iterations; {m['rule']} with {m['parameters']:,} meta-parameters, "
            f"`innerloop/weights/{m['file']}` (SHA-256 `{m['sha256'][:16]}…`). {m['notes']}. The run folder's "
            f"`metrics.jsonl` holds its meta-training curve. Reproduce:", "",
            f"    {m['reproduce']}"]


def chosen(done: dict, fam: str, method: str, metric: str, tag: str) -> dict | None:
    """The test scores of ``method`` at the learning rate its validation grid picked (the tuner has none)."""
    if method in GRIDS:
        val = [(done[k]["mean"], g) for g in GRIDS[method] if (k := f"{fam}|{method}|{g}|val|loss") in done]
        if len(val) < len(GRIDS[method]):
            return None
        return done.get(f"{fam}|{method}|{min(val)[1]}|test|{metric}")
    return done.get(f"{fam}|{tag}|None|test|{metric}")


def plot(path: Path, rows, fams) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fams), figsize=(4 * len(fams), 3.6), squeeze=False)
    colours = {"tuner": "tab:red", "other": "tab:orange", "adam": "tab:blue", "sgd": "tab:green"}
    for ax, fam in zip(axes[0], fams):
        for f, method, metric, r, name in rows:
            if f != fam or metric != "loss":
                continue
            xs = [max(m, 1) for m in r.get("marks", MARKS)]
            label = name if method in ("tuner", "other") else f"{name} {r['lr']}"
            ax.plot(xs, r["means"], marker="o", color=colours[method], label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(fam, fontsize=11)
        ax.set_xlabel("fine-tuning steps (0 drawn at 1)")
        ax.set_ylabel("query loss (mean over tasks)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle("held-out problems: shipped fine-tuners vs tuned Adam and SGD", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


N_TASKS, VAL_TASKS, CHUNK = 50, 20, 25

if __name__ == "__main__":
    main()
