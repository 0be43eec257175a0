"""The README's Python code blocks run as written (in a scratch folder that sees the repository's committed
``results/``), so the README cannot drift from the code. Command blocks are checked in ``tests/test_cli.py`` and
friends; this file runs every ```python block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(tmp_path, index):
    (tmp_path / "results").symlink_to(REPO / "results")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO / "src")}
    env.pop("INNERLOOP_DATA", None)  # the README's Python examples need no dataset
    done = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, f"README python block {index + 1} failed:\n{BLOCKS[index]}\n{done.stderr[-3000:]}"


def test_the_readme_key_reference_is_the_generated_one():
    """The README's config key reference is exactly ``innerloop configs --keys``: a new key cannot be missing."""
    from innerloop.configs_cli import key_reference_markdown

    text = (REPO / "README.md").read_text()
    block = text.split("<!-- keys:start -->\n", 1)[1].split("\n<!-- keys:end -->", 1)[0]
    assert block == key_reference_markdown(level=3).rstrip("\n"), (
        "README key reference is stale: regenerate it from innerloop.configs_cli.key_reference_markdown(level=3)")
