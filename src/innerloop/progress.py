"""A one-line progress display: iteration, meta-loss, speed, ETA (stderr)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True, label: str = "train"):
        self.total, self.start, self.label = total, start, label
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.last_pct = -1

    def update(self, it: int, loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        done = it - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - it) / rate if rate > 0 else float("inf")
        line = (
            f"{self.label} {it}/{self.total} | meta-loss {loss:.4f} | {rate:.1f} it/s | "
            f"eta {eta / 60:.1f} min"
        )
        if self.tty:
            if now - self.last > 0.25 or it == self.total:
                sys.stderr.write("\r" + line.ljust(78))
                sys.stderr.flush()
                self.last = now
        else:
            pct = int(100 * it / max(self.total, 1)) // 10
            if pct != self.last_pct:
                sys.stderr.write(line + "\n")
                self.last_pct = pct

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
