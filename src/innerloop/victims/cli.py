"""``innerloop victim train --dataset {mnist,cifar10}``: train (or reuse) a LeNet-5 victim.

Wire into the main parser with ``register(subparsers)``; the parsed arguments go to ``main(args)``
(also set as ``args.func``), which prints one JSON line with the test accuracy and returns 0, or
prints one line ``innerloop: error: ...`` and returns 2 for a mistake the user can fix.
"""

from __future__ import annotations

import argparse
import json
import sys

from innerloop.errors import ConfigError, UserError

_SUMMARY_KEYS = ("dataset", "test_accuracy", "test_images", "train_images", "epochs", "seed", "seconds",
                 "reused", "path")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``victim`` command (with ``train``) to ``subparsers``."""
    from innerloop.victims.train import RECIPES

    p = subparsers.add_parser("victim", help="train the LeNet-5 victims of the universal-perturbation experiment",
                              description="Train (or reuse) the pre-trained LeNet-5 classifiers that LFT attacks.")
    sub = p.add_subparsers(dest="victim_command", required=True)
    t = sub.add_parser("train", help="train a victim on the real data and report its test accuracy")
    t.add_argument("--dataset", required=True, choices=list(RECIPES))
    t.add_argument("--data", default=None,
                   help="folder holding mnist/ and cifar10/ (or the dataset folder itself); default $INNERLOOP_DATA")
    t.add_argument("--out", default=None, help="folder for victim.pt and victim.json (default: victims/<dataset>)")
    t.add_argument("--epochs", type=int, default=None,
                   help="default: " + ", ".join(f"{k} {r.epochs}" for k, r in RECIPES.items()))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu or cuda (bit-for-bit reproducible on cpu)")
    t.add_argument("--limit", type=int, default=None, help="train on the first N training images only (quick checks)")
    t.add_argument("--force", action="store_true", help="retrain and replace an existing victim.pt")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    p.set_defaults(func=main)
    return p


def _train(args: argparse.Namespace) -> None:
    from innerloop.victims.train import stderr_log, train_victim

    out = args.out if args.out is not None else f"victims/{args.dataset}"
    result = train_victim(args.dataset, args.data, out, epochs=args.epochs, seed=args.seed, device=args.device,
                          limit=args.limit, force=args.force, log=None if args.quiet else stderr_log)
    print(json.dumps({k: result[k] for k in _SUMMARY_KEYS if k in result}), flush=True)


def main(args: argparse.Namespace) -> int:
    """Run ``innerloop victim train``; 0 on success, 2 after a one-line error."""
    try:
        if args.victim_command == "train":
            _train(args)
        else:  # pragma: no cover - argparse enforces the choice
            raise ConfigError(f"unknown victim command {args.victim_command!r}")
    except UserError as e:
        sys.stderr.write(f"innerloop: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("innerloop: interrupted; no victim.pt was written\n")
        return 130
    return 0
