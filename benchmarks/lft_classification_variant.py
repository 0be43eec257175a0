"""Train and evaluate one ``lft-classification`` row with extra settings, beside the table (not in it).

    python benchmarks/lft_classification_variant.py cifar-lft cifar-lft-kaiming 'init.scheme="kaiming"'
    python benchmarks/lft_classification_variant.py mnist-cifar-lft mnist-cifar-lft-seg20 train.truncation=20

Builds row ROW of ``innerloop reproduce lft-classification --budget cpu`` with the ``--set``-style OVERRIDES
appended, and runs it as the reproduction runs its rows (resumable; evaluated on the same fixed test tasks) into
``results/lft-classification/variants/runs/NAME``. A variant whose ``config.toml`` equals what a row produces
after a protocol change can be moved into ``results/lft-classification/runs/<row>``. Data from
``$INNERLOOP_DATA`` (default ../shared/data); one thread unless ``INNERLOOP_THREADS`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("row", help="a row id, e.g. cifar-lft")
    ap.add_argument("name", help="the variant's run folder name")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE settings (TOML values)")
    ap.add_argument("--budget", default="cpu")
    args = ap.parse_args()
    os.environ.setdefault("INNERLOOP_DATA", str(ROOT.parent / "shared/data"))
    from innerloop.errors import UserError
    from innerloop.reproduce import lft_classification
    from innerloop.reproduce.runner import _run_row

    rows = {r.id: r for r in lft_classification.rows_for(args.budget, "cpu")}
    if args.row not in rows:
        raise SystemExit(f"unknown row {args.row!r}; rows: {', '.join(rows)}")
    row = replace(rows[args.row], id=args.name, overrides=rows[args.row].overrides + args.overrides)
    try:
        res = _run_row(row, str(ROOT / "results/lft-classification/variants"), int(os.environ.get("INNERLOOP_THREADS", "1")))
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    if res is None:
        raise SystemExit(f"{args.name} diverged: see its diverged.json")
    for test, ev in res["evals"].items():
        print(test, " ".join(f"{s['steps']}:{s['mean']:.1f}±{s['ci95']:.1f}" for s in ev["by_steps"]))


if __name__ == "__main__":
    main()
