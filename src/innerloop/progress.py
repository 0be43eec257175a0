"""A one-line progress display on stderr: what is done of what, a status text, speed and time left.

On a terminal the line redraws in place (at most 4 times a second); without one (a log file, CI, ``nohup``) a
full line is written at each tenth of the work *and* at least every ``every`` seconds, so a long phase is never
silent for more than that.
"""

from __future__ import annotations

import sys
import time

#: seconds between lines when stderr is not a terminal
EVERY = 30.0


class Progress:
    """``update(done, loss)`` for meta-training (iterations, meta-loss) or ``update(done, text=...)`` for any other
    phase (``unit``: what is counted, e.g. "tasks")."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, label: str = "train",
                 unit: str = "it", every: float = EVERY):
        self.total, self.start, self.label, self.unit, self.every = total, start, label, unit, every
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.last = 0.0 if self.tty else self.t0
        self.last_pct = int(100 * start / max(total, 1)) // 10
        self.shown = False

    def update(self, it: int, loss: float | None = None, text: str = "") -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        done = it - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - it) / rate if rate > 0 else float("inf")
        parts = [f"{self.label} {it}/{self.total}"]
        if loss is not None:
            parts.append(f"meta-loss {loss:.4f}")
        if text:
            parts.append(text)
        speed = f"{rate:.1f} {self.unit}/s" if rate >= 0.1 else f"{1 / rate:.0f} s/{self.unit}" if rate > 0 else ""
        parts += [p for p in (speed, f"eta {_duration(eta)}" if it < self.total else
                              f"took {_duration(now - self.t0)}") if p]
        line = " | ".join(parts)
        if self.tty:
            if now - self.last > 0.25 or it == self.total:
                sys.stderr.write("\r" + line.ljust(78))
                sys.stderr.flush()
                self.last, self.shown = now, True
        else:
            pct = int(100 * it / max(self.total, 1)) // 10
            if pct != self.last_pct or now - self.last >= self.every:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
                self.last_pct, self.last = pct, now

    def close(self) -> None:
        if self.enabled and self.tty and self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
