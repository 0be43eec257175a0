"""Fixtures for the victim tests: the shared real data and one tiny trained MNIST victim."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))
#: A tiny but real run: the first 2,000 MNIST training images, 2 epochs (about 1 s on one core).
TINY = {"epochs": 2, "limit": 2000, "batch_size": 32, "seed": 0}


def shared(*parts: str) -> Path:
    """A path inside the shared data folder; skips the test when it is not on this machine."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} not present (set INNERLOOP_SHARED_DATA to the folder holding it)")
    return path


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One decoded-dataset cache for the whole session (never the user's ~/.cache/innerloop)."""
    return tmp_path_factory.mktemp("victim-data-cache")


@pytest.fixture(autouse=True)
def _isolated_env(data_cache, monkeypatch):
    monkeypatch.setenv("INNERLOOP_CACHE", str(data_cache))
    monkeypatch.delenv("INNERLOOP_DATA", raising=False)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_victim(tmp_path_factory, data_cache):
    """``(result, out_dir)`` of a tiny MNIST victim trained once per session."""
    from innerloop.victims import train_victim

    root = shared("mnist")
    out = tmp_path_factory.mktemp("tiny-victim")
    old = os.environ.get("INNERLOOP_CACHE")
    os.environ["INNERLOOP_CACHE"] = str(data_cache)
    try:
        result = train_victim("mnist", root, out, log=None, **TINY)
    finally:
        if old is None:
            os.environ.pop("INNERLOOP_CACHE", None)
        else:
            os.environ["INNERLOOP_CACHE"] = old
    return result, out
