"""Paper reproductions: one module per table, all writing the same ``results.json`` shape.

``{"name", "budget", "rows": [{"method", "setting", "metric", "mean", "ci95", "tasks", "paper", ...}]}``
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from innerloop.errors import UserError

if TYPE_CHECKING:
    from innerloop.reproduce.runner import Row

REPRODUCTIONS = ("alfa-sinusoid", "lft-sinusoid", "omniglot", "lft-uap", "lft-classification", "alfa-meta-dataset",
                 "meta-dataset-mini")


def reproduction(name: str) -> ModuleType:
    """The module of reproduction ``name`` (``reproduce(budget, out, ...)`` and ``rows_for(budget, device)``)."""
    if name not in REPRODUCTIONS:
        raise UserError(f"unknown reproduction {name!r}; available: {', '.join(REPRODUCTIONS)}")
    return importlib.import_module(f"innerloop.reproduce.{name.replace('-', '_')}")


def reproduction_rows(name: str, budget: str, device: str = "cpu") -> dict[str, Row]:
    """Reproduction ``name``'s rows at ``budget``, by row id."""
    return {r.id: r for r in reproduction(name).rows_for(budget, device)}


def run_reproduction(name: str, budget: str, out: str, jobs: int = 1, device: str | None = None, only: str | None = None):
    return reproduction(name).reproduce(budget, out, jobs=jobs, device=device, only=only)
