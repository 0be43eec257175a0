"""Train and evaluate one row of an LFT reproduction with extra settings, beside the table (not in it).

    python benchmarks/variant.py lft-classification cifar-lft cifar-lft-kaiming 'init.scheme="kaiming"'
    python benchmarks/variant.py lft-classification mnist-cifar-lft mnist-cifar-lft-seg20 train.truncation=20
    python benchmarks/variant.py lft-uap mnist-lft-fo mnist-lft-fo-400 train.iterations=400 --extend
    python benchmarks/variant.py lft-uap mnist-lft-fo mnist-lft-fo-800 train.iterations=800 --extend mnist-lft-fo-400

Builds row ROW of ``innerloop reproduce NAME --budget cpu`` with the ``--set``-style OVERRIDES appended, and runs
it as the reproduction runs its rows (resumable; evaluated on the same fixed test tasks) into
``results/NAME/variants/runs/VARIANT``. ``--extend`` starts the variant from the finished row's checkpoint
(or, ``--extend OTHER``, from variant OTHER's) instead of from scratch, so ``train.iterations=N`` (the only
training setting a resumed run may change) continues that meta-training to N iterations; the source folder is
never written. A variant whose ``config.toml`` equals what a row produces after a protocol change can be moved
into ``results/NAME/runs/<row>``. Data from
``$INNERLOOP_DATA`` (default ../shared/data), victims from ``$INNERLOOP_VICTIMS`` (default results/victims); one
thread unless ``INNERLOOP_THREADS`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("lft-classification", "lft-uap")
SEED_FILES = ("checkpoint.pt", "config.toml", "metrics.jsonl")  # what a resumed run reads


def seed_from(source: Path, run_dir: Path) -> None:
    """Copy a finished run's checkpoint, config and metrics into an empty variant folder (once)."""
    if (run_dir / "checkpoint.pt").is_file():
        return  # already seeded (or already extending): resume from there
    if not (source / "result.json").is_file():
        raise SystemExit(f"error: {source} holds no finished run (result.json): finish it first, or drop --extend")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in SEED_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, run_dir / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", choices=NAMES, help="the reproduction")
    ap.add_argument("row", help="a row id, e.g. cifar-lft")
    ap.add_argument("variant", help="the variant's run folder name")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE settings (TOML values)")
    ap.add_argument("--budget", default="cpu")
    ap.add_argument("--extend", nargs="?", const="", default=None, metavar="OTHER",
                    help="continue the finished row's meta-training (or variant OTHER's) to train.iterations, "
                         "instead of starting over")
    args = ap.parse_args()
    os.environ.setdefault("INNERLOOP_DATA", str(ROOT.parent / "shared/data"))
    os.environ.setdefault("INNERLOOP_VICTIMS", str(ROOT / "results/victims"))
    from innerloop.errors import UserError
    from innerloop.reproduce import reproduction_rows
    from innerloop.reproduce.runner import _run_row

    rows = reproduction_rows(args.name, args.budget)
    if args.row not in rows:
        raise SystemExit(f"unknown row {args.row!r}; rows: {', '.join(rows)}")
    out = ROOT / "results" / args.name / "variants"
    if args.extend is not None:
        source = out / "runs" / args.extend if args.extend else ROOT / "results" / args.name / "runs" / args.row
        seed_from(source, out / "runs" / args.variant)
    row = replace(rows[args.row], id=args.variant, overrides=rows[args.row].overrides + args.overrides)
    try:
        res = _run_row(row, str(out), int(os.environ.get("INNERLOOP_THREADS", "1")))
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    if res is None:
        raise SystemExit(f"{args.variant} diverged: see its diverged.json")
    for test, ev in res["evals"].items():
        print(test, " ".join(f"{s['steps']}:{s['mean']:.1f}±{s['ci95']:.1f}" for s in ev["by_steps"]
                             if s["steps"] in (0, 1, 5, 10, 20, 50, 100, 200)))


if __name__ == "__main__":
    main()
