"""Dataset load times: decode from the source files + build the cache, then load from the cache.

    python benchmarks/datasets.py                     # shared data at $INNERLOOP_SHARED_DATA or /work/shared/data
    python benchmarks/datasets.py --data DIR --repeat 5

Omniglot: all 1,623 characters (Vinyals ``trainval`` + ``test``, 28x28, with the 90/180/270
rotation classes) decoded from ``images_background.zip`` / ``images_evaluation.zip`` into a fresh
cache; targets: under 30 s to build, under 3 s to load back. MNIST: ``train`` + ``test`` from the
IDX ``.gz`` files. Cache loads are timed in the same process right after the build (the files
are then in the OS page cache, as on any second run); the best of ``--repeat`` loads is reported,
then one load in a new process (what a training run sees), and ``mmap=True`` loads for comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from innerloop.data import load_dataset

TARGETS = {"omniglot": (30.0, 3.0), "mnist": (30.0, 3.0)}
WORKLOADS = {
    "omniglot": ("omniglot", ["trainval", "test"], "all 1,623 characters x 20 drawings, 28x28, 4 rotation classes each"),
    "mnist": ("mnist", ["train", "test"], "60,000 + 10,000 digits, 28x28"),
}


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _fresh_process_load(name: str, root: Path, split_names: list[str], cache: Path) -> float:
    """Seconds a new Python process spends in ``load_dataset`` (imports excluded) for every split."""
    code = ("import sys, time; from innerloop.data import load_dataset; t = time.perf_counter(); "
            f"[load_dataset({name!r}, {str(root)!r}, s, cache_dir={str(cache)!r}) for s in {split_names!r}]; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(name: str, data: Path, cache: Path, repeat: int) -> list[str]:
    folder, split_names, what = WORKLOADS[name]
    root = data / folder
    build_s, built = _timed(lambda: [load_dataset(name, root, s, cache_dir=cache) for s in split_names])
    loads = [_timed(lambda: [load_dataset(name, root, s, cache_dir=cache) for s in split_names])[0]
             for _ in range(repeat)]
    mmaps = [_timed(lambda: [load_dataset(name, root, s, cache_dir=cache, mmap=True) for s in split_names])[0]
             for _ in range(repeat)]
    fresh = _fresh_process_load(name, root, split_names, cache)
    images = sum(len(d.labels) for d in built)
    classes = sum(d.num_classes for d in built)
    size_mb = sum(d.images.nbytes for d in built) / 2**20
    build_target, load_target = TARGETS[name]
    ok = lambda t, target: "ok" if t < target else "OVER TARGET"  # noqa: E731
    return [
        f"== {name}: {what} ({' + '.join(split_names)}) ==",
        f"  {images} images, {classes} classes, {size_mb:.0f} MiB uint8",
        f"  read sources + build cache  {build_s:7.2f} s   (target < {build_target:.0f} s: {ok(build_s, build_target)})",
        f"  load from cache (best of {repeat}) {min(loads):7.3f} s   (target < {load_target:.0f} s: "
        f"{ok(min(loads), load_target)}; all: {', '.join(f'{t:.3f}' for t in loads)})",
        f"  load from cache, new process {fresh:6.3f} s   (target < {load_target:.0f} s: {ok(fresh, load_target)})",
        f"  load from cache, mmap=True  {min(mmaps):7.3f} s",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"),
                        help="folder with omniglot/ and mnist/ (default: $INNERLOOP_SHARED_DATA or /work/shared/data)")
    parser.add_argument("--repeat", type=int, default=3, help="cache loads to time (best is reported)")
    parser.add_argument("--only", choices=sorted(WORKLOADS), default=None)
    args = parser.parse_args()
    data = Path(args.data)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"python {platform.python_version()}, {os.cpu_count()} CPU cores, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"data: {data}; fresh temporary cache per dataset")
    for name in [args.only] if args.only else list(WORKLOADS):
        cache = Path(tempfile.mkdtemp(prefix=f"innerloop-bench-{name}-"))
        try:
            print("\n".join(run(name, data, cache, args.repeat)), flush=True)
        finally:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
