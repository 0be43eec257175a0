"""Fixtures for the dataset tests: the shared real data, a local HTTP server, small image files."""

from __future__ import annotations

import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))


def shared(*parts: str) -> Path:
    """A path inside the shared data folder; skips the test when it is not on this machine."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} not present (set INNERLOOP_SHARED_DATA to the folder holding it)")
    return path


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path, monkeypatch):
    """No test may write to the real ~/.cache/innerloop."""
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "default-cache"))


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder; ``/short/<n>`` promises 5000 bytes and sends ``n`` before closing."""

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass

    def do_GET(self):
        if self.path.startswith("/short/"):
            sent = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * sent)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class LocalServer:
    """An HTTP server on 127.0.0.1 (ephemeral port) in a thread, serving ``directory``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(tmp_path):
    """A local server over an empty ``served`` folder (the test fills it)."""
    served = tmp_path / "served"
    served.mkdir()
    srv = LocalServer(served)
    yield srv
    srv.close()


def write_image(path: Path, array: np.ndarray, **save_args) -> Path:
    """Save a uint8 ``[H, W]`` or ``[H, W, 3]`` array as an image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_args)
    return path


def random_image(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    """A smooth-ish random uint8 image (JPEG-friendly)."""
    base = rng.integers(0, 256, size=(max(h // 4, 1), max(w // 4, 1), channels), dtype=np.uint8)
    im = Image.fromarray(base if channels == 3 else base[..., 0]).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(im)
