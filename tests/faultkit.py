"""Shared harness for the bad-input corpus: run the CLI in-process and check it failed cleanly.

A clean failure (issue 19) is: exit code 2, exactly one line on stderr starting ``innerloop: error:``,
no traceback (no exception escapes ``innerloop.cli.main``), and nothing written or changed under the
watched folder except the paths the case owns.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(argv: list[str], cwd: str | Path | None = None) -> CliResult:
    """``innerloop ARGV`` in this process; an exception escaping ``main`` propagates (that is a traceback)."""
    from innerloop.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as e:  # argparse errors exit through sys.exit
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(old)
    return CliResult(code, out.getvalue(), err.getvalue())


def snapshot(root: str | Path) -> dict[str, tuple]:
    """Every file and folder under ``root`` with its kind, size and content hash (``__pycache__`` ignored)."""
    root = Path(root)
    state: dict[str, tuple] = {}
    if not root.exists():
        return state
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel_dir = os.path.relpath(dirpath, root)
        state[rel_dir] = ("dir",)
        for name in filenames:
            p = Path(dirpath) / name
            rel = os.path.relpath(p, root)
            if p.is_symlink():
                state[rel] = ("link", os.readlink(p))
                continue
            try:
                data = p.read_bytes()
            except OSError:
                state[rel] = ("unreadable",)
                continue
            state[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return state


def changed(before: dict[str, tuple], after: dict[str, tuple], owned: tuple[str, ...] = ()) -> list[str]:
    """Paths added, removed or modified between two snapshots, outside the owned ones."""
    def mine(rel: str) -> bool:
        return any(rel == o or rel.startswith(o.rstrip("/") + "/") for o in owned)

    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k) and not mine(k))


def assert_clean_failure(argv: list[str], watch: str | Path, owned: tuple[str, ...] = (),
                         match: str | None = None, cwd: str | Path | None = None) -> CliResult:
    """Run ``innerloop ARGV`` and assert a clean failure; ``match``: text the error line must contain."""
    before = snapshot(watch)
    res = run_cli(argv, cwd=cwd)
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert res.code == 2, f"exit {res.code}, stderr: {res.err[-2000:]}"
    assert "Traceback" not in res.err, res.err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {res.err[-2000:]}"
    assert lines[0].startswith("innerloop: error: "), lines[0]
    if match is not None:
        assert match.lower() in lines[0].lower(), f"{match!r} not in {lines[0]!r}"
    diff = changed(before, snapshot(watch), owned)
    assert not diff, f"the failed command changed {diff}"
    return res
