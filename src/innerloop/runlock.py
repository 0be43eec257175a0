"""One writer per run directory: an OS-level lock held for the life of ``innerloop train``.

``fcntl.flock`` on ``<run>/.lock``: the kernel releases it when the holding process exits, however it exits
(SIGKILL included), so a stale lock file left by a killed run never blocks the next one. The holder's PID is
written into the file for the second process's error message. Readers (``innerloop eval``) take no lock:
checkpoints are replaced atomically, so they always see a complete one.
"""

from __future__ import annotations

import os
from pathlib import Path

from innerloop.errors import UserError

LOCK = ".lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a second writer
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """``with RunLock(run_dir): ...`` — exclusive, non-blocking; a second writer gets a one-line :class:`UserError`."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"{self.path.parent} is being written by another 'innerloop train' (PID {holder}): wait for it to "
                "finish (or stop it), or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
