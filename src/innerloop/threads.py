"""How many threads a process uses: ``INNERLOOP_THREADS``, and a warning when the machine is already busy."""

from __future__ import annotations

import os

from innerloop.errors import UserError


def env_threads() -> int:
    """``INNERLOOP_THREADS`` as a positive thread count, or 0 when unset."""
    raw = os.environ.get("INNERLOOP_THREADS", "").strip()
    if not raw:
        return 0
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"INNERLOOP_THREADS={raw!r} must be a whole number >= 1 (or unset: all cores)")
    return n


def busy_machine_warning(threads: int, load: float | None = None, cores: int | None = None) -> str | None:
    """A one-line warning when ``threads`` more threads would oversubscribe the cores other processes already keep
    busy (1-minute load average), else None. Only a warning: the thread count stays a function of the settings, so
    a run's numbers do not depend on what else the machine was doing."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform (Windows)
            return None
    if "INNERLOOP_THREADS" in os.environ or threads <= 1 or load + threads <= cores + 0.5:
        return None
    free = max(1, int(cores - load + 0.5))
    return (f"warning: the machine is already busy (load {load:.1f} on {cores} cores) and this run starts {threads} "
            f"threads: oversubscribed threads slow it several-fold; set INNERLOOP_THREADS={free} (or fewer)")
