"""Paired comparison of two methods on the same fixed test tasks: the per-task score differences.

Every method of a reproduction is scored on one seeded list of test tasks, so ``a_i - b_i`` removes the
task-to-task spread both share; its mean and 95% CI (``evaluate.paired_difference``) order two methods whose
own CIs overlap. Needs the per-task ``values`` that ``evaluate_meta`` stores in each ``by_steps`` entry.
"""

from __future__ import annotations

from typing import Any, Callable

from innerloop.evaluate import has_values, paired_difference


def pooled_columns(test: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each test column's evaluations, from a table's ``{column: data sources}``: a one-source column is its own
    evaluation, a several-source column (the mixture) pools the one-source columns of its sources."""
    single = {s[0]: name for name, s in test.items() if len(s) == 1}
    return {name: [single[x] for x in s] for name, s in test.items()}


def task_values(result: dict[str, Any], names: list[str]) -> dict[int, list[float]] | None:
    """Per-task scores by step count of one row over the evaluations ``names`` (concatenated in that order:
    a pooled column such as the mixture); None when one of them was scored before per-task values were kept."""
    evals = result.get("evals", {})
    if not all(n in evals and has_values(evals[n]) for n in names):
        return None
    out: dict[int, list[float]] = {}
    for n in names:
        for s in evals[n]["by_steps"]:
            out.setdefault(s["steps"], []).extend(s["values"])
    return out


def paired(results: list[dict[str, Any]], group: Callable[[dict[str, Any]], dict[str, Any]],
           columns: dict[str, list[str]], a: str = "LFT", b: str = "L2O",
           steps: list[int] | None = None) -> list[dict[str, Any]]:
    """``a`` minus ``b`` per (group, test column, steps): ``group(result)`` gives the setting two rows must share
    (e.g. the meta-training data), ``columns`` maps each test column to the evaluations it pools; ``steps``
    keeps only those step counts (default: every recorded one)."""
    by: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in results:
        by.setdefault(tuple(group(r).items()), {})[r["method"]] = r
    rows = []
    for key, methods in by.items():
        if a not in methods or b not in methods:
            continue
        for test, names in columns.items():
            va, vb = task_values(methods[a], names), task_values(methods[b], names)
            if va is None or vb is None:
                continue
            for s in sorted(set(va) & set(vb) & (set(steps) if steps is not None else set(va))):
                rows.append({"methods": f"{a} - {b}", "setting": {**dict(key), "test": test, "steps": s},
                             "metric": "difference", **paired_difference(va[s], vb[s])})
    return rows


def paired_table(pairs: list[dict[str, Any]], fields: list[str], steps: list[int], unit: str) -> list[str]:
    """Markdown: one line per (``fields`` of the setting, test column), one cell per step count."""
    if not pairs:
        return []
    at = {(tuple(p["setting"][f] for f in fields), p["setting"]["test"], p["setting"]["steps"]): p for p in pairs}
    keys = list(dict.fromkeys((tuple(p["setting"][f] for f in fields), p["setting"]["test"]) for p in pairs))
    a, b = pairs[0]["methods"].split(" - ")
    lines = [f"{a} − {b} ({unit}), paired over the same test tasks: mean ± 95% CI of the per-task differences (a CI "
             "that excludes 0 orders the two methods).", "",
             "| " + " | ".join(f.replace("train", "meta-training") for f in fields) + " | test | "
             + " | ".join(f"{s} step" + "s" * (s != 1) for s in steps) + " |",
             "|" + "---|" * (len(fields) + 1 + len(steps))]
    for group, test in keys:
        cells = [at.get((group, test, s)) for s in steps]
        lines.append("| " + " | ".join(map(str, group)) + f" | {test} | " + " | ".join(
            "—" if c is None else f"{c['mean']:+.1f} ± {c['ci95']:.1f}" for c in cells) + " |")
    return lines
