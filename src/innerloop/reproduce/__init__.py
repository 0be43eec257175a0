"""Paper reproductions: one module per table, all writing the same ``results.json`` shape.

``{"name", "budget", "rows": [{"method", "setting", "metric", "mean", "ci95", "tasks", "paper", ...}]}``
"""

from __future__ import annotations

from innerloop.errors import UserError

REPRODUCTIONS = ("alfa-sinusoid", "lft-sinusoid", "omniglot", "lft-uap", "lft-classification")


def run_reproduction(name: str, budget: str, out: str, jobs: int = 1, device: str | None = None, only: str | None = None):
    if name == "alfa-sinusoid":
        from innerloop.reproduce.alfa_sinusoid import reproduce

        return reproduce(budget, out, jobs=jobs, device=device, only=only)
    if name == "lft-sinusoid":
        from innerloop.reproduce.lft_sinusoid import reproduce

        return reproduce(budget, out, jobs=jobs, device=device, only=only)
    if name == "omniglot":
        from innerloop.reproduce.omniglot import reproduce

        return reproduce(budget, out, jobs=jobs, device=device, only=only)
    if name == "lft-uap":
        from innerloop.reproduce.lft_uap import reproduce

        return reproduce(budget, out, jobs=jobs, device=device, only=only)
    if name == "lft-classification":
        from innerloop.reproduce.lft_classification import reproduce

        return reproduce(budget, out, jobs=jobs, device=device, only=only)
    raise UserError(f"unknown reproduction {name!r}; available: {', '.join(REPRODUCTIONS)}")
