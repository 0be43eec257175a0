"""``innerloop data download NAME --root DIR``, ``innerloop data prepare NAME --root DIR`` and
``innerloop data to-records SOURCE... --out DIR`` (Meta-Dataset records, :mod:`innerloop.data.metadataset.convert`).

Wire into the main parser with ``register(subparsers)``; the parsed arguments go to ``main(args)``
(also set as ``args.func``), which returns the exit code: 0, or 2 after printing a one-line
``innerloop: error: ...`` for a mistake the user can fix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from innerloop.errors import ConfigError, UserError


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``data`` command (with ``download``, ``prepare`` and ``to-records``) to ``subparsers``."""
    from innerloop.data import READERS

    names = ", ".join(READERS)
    p = subparsers.add_parser("data", help="download datasets and build their decoded caches",
                              description="Download datasets (checksum-verified), build their decoded caches, or "
                                          "write them as Meta-Dataset records.")
    sub = p.add_subparsers(dest="data_command", required=True)

    d = sub.add_parser("download", help="download a dataset, verify its SHA-256 and extract it safely")
    d.add_argument("name", help="omniglot | mnist | cifar10 | cub (miniimagenet/tieredimagenet: says where files go)")
    d.add_argument("--root", required=True, help="folder to put the dataset in")
    d.add_argument("--sha256", action="append", default=[], metavar="[FILE=]HEX",
                   help="expected SHA-256: required for a file without a recorded one, overrides a recorded one; "
                        "repeat as FILE=HEX for several files")
    d.add_argument("--mirror", default=None,
                   help="base URL laid out like ROOT to fetch from instead (http(s):// or file://)")
    d.add_argument("--force", action="store_true", help="replace files that are already present")

    r = sub.add_parser("prepare", help="decode a dataset once into the cache and print counts and time")
    r.add_argument("name", help=names)
    r.add_argument("--root", required=True, help="folder holding the dataset")
    r.add_argument("--split", action="append", default=None,
                   help="split to prepare (repeatable; default: all standard splits)")
    r.add_argument("--cache-dir", default=None, help="cache folder (default: $INNERLOOP_CACHE or ~/.cache/innerloop)")
    r.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. image_size=84 or rotations=false (VALUE is JSON, else a string)")

    m = sub.add_parser("to-records", help="write omniglot/mnist/cifar10 as Meta-Dataset records (one TFRecord "
                                          "file per class + dataset_spec.json)")
    m.add_argument("sources", nargs="+", metavar="SOURCE", help="omniglot, mnist, cifar10, or all")
    m.add_argument("--out", required=True, help="records folder: each source goes to OUT/<source>/")
    m.add_argument("--data", default=None,
                   help="folder holding omniglot/, mnist/, cifar10/ (default: $INNERLOOP_DATA)")
    m.add_argument("--max-classes", type=int, default=None,
                   help="keep the first N classes (Omniglot: per alphabet), for a small conversion")
    m.add_argument("--max-images", type=int, default=None, help="keep the first N images per class")
    m.add_argument("--flat-split", default=None, metavar="TRAIN,VALID,TEST",
                   help="class counts per split for mnist/cifar10 (default 0,0,10: test-only, as in the extended "
                        "Meta-Dataset)")
    m.add_argument("--images", default="test", choices=("test", "all"),
                   help="mnist/cifar10 images to use: the test split (default) or train and test")
    m.add_argument("--force", action="store_true", help="replace an existing OUT/<source>/ records folder")
    p.set_defaults(func=main)
    return p


def _sha256_arg(values: list[str]) -> str | dict[str, str] | None:
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    out = {}
    for v in values:
        if "=" not in v:
            raise ConfigError(f"--sha256 {v!r}: with several values, write each as FILE=HEX")
        name, _, hexdigest = v.partition("=")
        out[name.strip()] = hexdigest.strip()
    return out


def _options(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: write KEY=VALUE, e.g. image_size=84")
        try:
            value = json.loads(raw.lower() if raw.lower() in ("true", "false", "null") else raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _download(args: argparse.Namespace) -> None:
    from innerloop.data import download

    placed = download.download(args.name, args.root, sha256=_sha256_arg(args.sha256), mirror=args.mirror,
                               force=args.force, log=download.print_log)
    for path in placed:
        print(path)
    if not placed:
        print(f"{args.name}: already present in {args.root}")


def _prepare(args: argparse.Namespace) -> None:
    from innerloop.data import cache, load_dataset, reader, reader_options, splits

    options = _options(args.option)
    module = reader(args.name)
    root = Path(args.root).expanduser()
    for split in args.split or splits(args.name):
        opts = reader_options(args.name, options)
        fp = cache.fingerprint(module.source_files(root, split, **opts))
        entry = cache.entry_dir(args.name, split, opts, fp, args.cache_dir, origin=str(root.resolve()))
        was_cached = (entry / "meta.json").is_file()
        start = time.perf_counter()
        ds = load_dataset(args.name, root, split, cache_dir=args.cache_dir, **options)
        seconds = time.perf_counter() - start
        shape = "x".join(str(s) for s in ds.images.shape[1:])
        how = "loaded from cache" if was_cached else "decoded and cached"
        print(f"{args.name} {split}: {len(ds.labels)} images, {ds.num_classes} classes, {shape}, "
              f"{how} in {seconds:.2f} s -> {entry}", flush=True)


def _flat_split(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise ConfigError(f"--flat-split {value!r}: write three class counts TRAIN,VALID,TEST, e.g. 5,2,3") from None


def _to_records(args: argparse.Namespace) -> None:
    from innerloop.data.metadataset import convert

    convert.convert_all(args.sources, args.out, data=args.data, max_classes=args.max_classes,
                        max_images=args.max_images, flat_split=_flat_split(args.flat_split), images=args.images,
                        force=args.force, log=lambda line: print(line, flush=True))


def main(args: argparse.Namespace) -> int:
    """Run ``innerloop data download|prepare|to-records``; 0 on success, 2 after a one-line error."""
    try:
        if args.data_command == "download":
            _download(args)
        elif args.data_command == "prepare":
            _prepare(args)
        elif args.data_command == "to-records":
            _to_records(args)
        else:  # pragma: no cover - argparse enforces the choice
            raise ConfigError(f"unknown data command {args.data_command!r}")
    except UserError as e:
        sys.stderr.write(f"innerloop: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("innerloop: interrupted; nothing partial was kept\n")
        return 130
    return 0
