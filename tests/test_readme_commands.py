"""Every command block of the README runs (issue 22): each ```bash block is executed line by line, in order, in a
scratch folder that sees the committed ``results/`` and the shared datasets, so the README cannot drift from the
command line. Commands that would train for minutes or hours run with the small budgets of :func:`shrink`
(appended ``--set`` overrides, capped iteration and task counts: the command itself, its flags, config names and
keys are the README's); commands that cannot run here (a multi-machine ``torchrun``, paper-budget reproductions,
the victims' training, ``pip``) are parsed by innerloop's own argument parser and their configs resolved, which
catches a renamed flag, config or key just the same. The quick start's two commands are what CI itself runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))
README = (REPO / "README.md").read_text()
BLOCKS = [b for lang, b in re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M) if lang in ("bash", "sh")]
TINY = ["--set", "train.iterations=3", "--set", "eval.tasks=4", "--set", "train.log_every=1"]
#: what cannot run on a CI machine: checked by the parser (and config resolution) only
PARSE_ONLY = (r"--nnodes", r"^innerloop reproduce .*--budget (paper|cpu)", r"^innerloop victim train",
              r"^innerloop finetune .*mypackage", r"^pip install", r"^python -m pytest",
              r"alfa/(mini|tiered)-")  # miniImageNet / tieredImageNet: no canonical download, not on CI machines


def commands(block: str) -> list[str]:
    """The block's commands: comments dropped, ``\\`` continuations joined, a ``python - <<'PY'`` heredoc kept whole."""
    out, lines, i = [], block.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if "<<'PY'" in line:
            j = lines.index("PY", i + 1)
            out.append("\n".join(lines[i:j + 1]))
            i = j + 1
            continue
        while line.rstrip().endswith("\\"):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        code = line.split("  #")[0].split(" # ")[0].strip() if not line.lstrip().startswith("#") else ""
        if code:
            out.append(code)
        i += 1
    return out


def shrink(argv: list[str], server: str) -> list[str]:
    """The README command with a CI-sized budget: tiny training, few test tasks, the local mirror for downloads."""
    cmd = argv[1] if len(argv) > 1 else ""
    argv = [re.sub(r"^train\.iterations=(\d+)$", lambda m: f"train.iterations={min(int(m.group(1)), 6)}", a)
            for a in argv]
    if "--tasks" in argv:  # a few tasks: the command, not the statistic, is under test (LFT tasks take ~4 s each)
        argv[argv.index("--tasks") + 1] = "4"
    if cmd == "train" and "--resume" not in argv:
        argv += TINY + ["--quiet"]
        if any(a.startswith("omniglot/") or a.startswith("alfa/") for a in argv):
            argv += ["--set", "model.filters=4", "--set", "task.query=1", "--set", "train.meta_batch=2"]
    if cmd == "reproduce":
        argv += ["--only", "main-maml-2x40-k5"]
    if argv[1:3] == ["data", "download"]:  # the local copy (its own checksums: the shared zips are repackaged)
        argv += ["--mirror", f"{server}/{argv[3]}"]
        for line in (SHARED / "SHA256SUMS").read_text().splitlines():
            digest, path = line.split(maxsplit=1)
            if path.startswith(f"./{argv[3]}/") and path.count("/") == 2:
                argv += ["--sha256", f"{path.rsplit('/', 1)[1]}={digest}"]
    if cmd == "plot":
        argv += ["--tasks", "4"]
    return argv


def parse_only(line: str) -> None:
    """Flags and subcommands through innerloop's parser; config names and --set keys resolved."""
    from innerloop import config as C
    from innerloop.cli import _parser

    argv = shlex.split(line)
    if argv[0] == "torchrun":
        argv = argv[argv.index("-m") + 1:]
    if argv[0] in ("pip", "python"):
        return
    args = _parser().parse_args(argv[1:])
    if getattr(args, "config", None) and args.config != "CONFIG":
        C.load(args.config, args.set)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    if not (SHARED / "omniglot").is_dir() or not (SHARED / "mnist").is_dir():
        pytest.skip("needs the shared Omniglot and MNIST data")
    from tests.data.conftest import LocalServer

    home = tmp_path_factory.mktemp("readme")
    (home / "results").symlink_to(REPO / "results")
    (home / "data").mkdir()
    # my_task/ for `innerloop predict`: 5 Omniglot evaluation characters, 1 support and 1 query drawing each
    import zipfile

    with zipfile.ZipFile(SHARED / "omniglot" / "images_evaluation.zip") as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        chars = sorted({n.rsplit("/", 1)[0] for n in names})[:5]
        for c in chars:
            drawings = [n for n in names if n.startswith(c + "/")][:2]
            label = c.replace("/", "_")
            for part, d in zip(("support/" + label, "query"), drawings):
                target = home / "my_task" / part / f"{label}-{Path(d).name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(d))
    server = LocalServer(SHARED)
    try:
        yield home, server.url
    finally:
        server.close()


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_command_block_runs(sandbox, index, tmp_path):
    home, server = sandbox
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO / "src"),
           "INNERLOOP_CACHE": str(home / "cache"), "INNERLOOP_THREADS": "2"}
    env["INNERLOOP_DATA"] = str(SHARED)  # the README's image commands assume the datasets are set up (its data block)
    for line in commands(BLOCKS[index]):
        line = line.replace("DATA", str(SHARED)).replace("--data DIR", f"--data {SHARED}")
        if line.startswith("export "):
            key, value = line[len("export "):].split("=", 1)
            env[key] = str(SHARED) if value.endswith("/data") else value
            continue
        if any(re.search(p, line) for p in PARSE_ONLY):
            parse_only(line)
            continue
        if line.startswith("python - <<'PY'"):
            body = line.split("\n", 1)[1].rsplit("\nPY", 1)[0]
            argv = [sys.executable, "-c", body]
        else:
            argv = shlex.split(line)
            if argv[0] == "torchrun":
                argv = [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
                argv = argv[:argv.index("-m", 3) + 2] + shrink(["innerloop", *argv[argv.index("-m", 3) + 2:]], server)[1:]
            elif argv[0] == "innerloop":
                argv = [sys.executable, "-m", "innerloop", *shrink(argv, server)[1:]]
        done = subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README command failed: {line}\nran: {argv}\n{done.stderr[-3000:]}"
