"""Time the README's quick start on this machine, as a new user runs it: a fresh clone, a fresh virtual environment,
the install, then the main job.

    python benchmarks/quickstart.py --out /tmp/quickstart            # clone of HEAD, install, quick budget
    python benchmarks/quickstart.py --out /tmp/quickstart --tests    # ... and the README's test command too

Prints the wall time of each phase (clone, ``pip install torch==2.13.0 -e .``, ``innerloop reproduce alfa-sinusoid
--budget quick``, optionally ``pip install -e ".[test]" && python -m pytest`` and the end-to-end suite
``python -m pytest -m slow`` that CI runs as well) and the 1-minute load average
before and after (another busy process on a 2-core machine distorts every number). Numbers in the README come
from this script on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(what: str, cmd: list[str] | str, cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, shell=isinstance(cmd, str), capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(f"{what:<58} {seconds:7.1f} s", flush=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="scratch folder (replaced)")
    ap.add_argument("--tests", action="store_true", help="also time the README's test command")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNERLOOP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
    total = timed("git clone (HEAD)", ["git", "clone", "-q", str(REPO), str(out / "innerloop")], out, env)
    clone = out / "innerloop"
    total += timed("python -m venv .venv", [sys.executable, "-m", "venv", ".venv"], clone, env)
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    total += timed("pip install torch==2.13.0 -e .", "pip install -q torch==2.13.0 -e .", clone, env)
    total += timed("innerloop reproduce alfa-sinusoid --budget quick",
                   "innerloop reproduce alfa-sinusoid --budget quick --out runs/quick", clone, env)
    print(f"{'quick start, all of the above':<58} {total:7.1f} s")
    print((clone / "runs" / "quick" / "results.md").read_text().split("| method", 1)[1].split("\n\n", 1)[0]
          .join(["| method", ""]))
    if args.tests:
        tests = timed('pip install -e ".[test]"', 'pip install -q torch==2.13.0 -e ".[test]"', clone, env)
        tests += timed("python -m pytest", "python -m pytest -x", clone, env)
        print(f"{'tests, install included':<58} {tests:7.1f} s")
        timed("python -m pytest -m slow (end-to-end suite, CI)", "python -m pytest -x -m slow", clone, env)
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
