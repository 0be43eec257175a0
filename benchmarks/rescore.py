"""Add per-task scores to finished reproduction rows scored before they were stored (no retraining).

    python benchmarks/rescore.py lft-classification results/lft-classification mnist-cifar-lft mnist-cifar-l2o
    python benchmarks/rescore.py lft-uap results/lft-uap mnist-lft-zo

Re-runs each row's evaluations on the same fixed test tasks, checks that every mean equals the stored one, and
writes the per-task ``values`` into ``OUT/runs/ROW/result.json``; rerun ``innerloop reproduce NAME --only ROW``
afterwards to regenerate the tables (with the paired LFT - L2O differences). Data from ``$INNERLOOP_DATA``
(default ../shared/data), victims from ``$INNERLOOP_VICTIMS`` (default results/victims); one thread unless
``INNERLOOP_THREADS`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", help="a reproduction, e.g. lft-classification")
    ap.add_argument("out", help="its output folder, e.g. results/lft-classification")
    ap.add_argument("rows", nargs="+", help="row ids")
    ap.add_argument("--budget", default="cpu")
    ap.add_argument("--tolerance", type=float, default=0.0,
                    help="admit a recomputed mean this far (metric units) from the stored one: float-level code "
                         "changes amplified by long unrolls; the old mean is kept as rescored_from")
    args = ap.parse_args()
    os.environ.setdefault("INNERLOOP_DATA", str(ROOT.parent / "shared/data"))
    os.environ.setdefault("INNERLOOP_VICTIMS", str(ROOT / "results/victims"))
    from innerloop.errors import UserError
    from innerloop.reproduce import reproduction_rows
    from innerloop.reproduce.runner import rescore_row

    try:
        rows = reproduction_rows(args.name, args.budget)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    for rid in args.rows:
        if rid not in rows:
            raise SystemExit(f"unknown row {rid!r}; rows: {', '.join(rows)}")
        try:
            res = rescore_row(rows[rid], args.out, int(os.environ.get("INNERLOOP_THREADS", "1")), args.tolerance)
        except UserError as e:
            raise SystemExit(f"error: {e}") from None
        print(rid, {k: round(v["mean"], 2) for k, v in res["evals"].items()},
              {k: f"was {v['rescored_from']:.2f}" for k, v in res["evals"].items() if "rescored_from" in v}, flush=True)


if __name__ == "__main__":
    main()
