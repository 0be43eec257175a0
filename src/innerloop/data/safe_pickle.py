"""Loading dataset pickles without running arbitrary code.

CIFAR-10's ``cifar-10-batches-py`` files and the miniImageNet / tieredImageNet caches are pickles,
and ``pickle.load`` on an untrusted file can call any importable function. :func:`load` unpickles
with a restricted :class:`pickle.Unpickler` whose ``find_class`` resolves only the globals that
numpy arrays need (array/scalar reconstruction, ``dtype``, ``ndarray``, and ``_codecs.encode``,
which Python 3 writes for ``bytes`` under protocol 2); every other global -- ``os.system``,
``builtins.eval``, any class -- is refused before anything runs. Python 2 pickles (the original
CIFAR-10 and tieredImageNet files) load with ``encoding="latin1"``, numpy's recommendation; their
``str`` keys arrive as ``str``, Python 3 ``bytes`` keys as ``bytes``: :func:`str_keys` evens that out.
Callers then check the structure (a dict of arrays/lists) before using it.
"""

from __future__ import annotations

import codecs
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from innerloop.data.messages import brief
from innerloop.errors import UserError


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The few numpy callables that array pickles reference, under every module name numpy uses."""
    reconstruct = np.zeros(1).__reduce__()[0]  # multiarray._reconstruct
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numeric._frombuffer (protocol 5)
    scalar = np.int64(0).__reduce__()[0]  # multiarray.scalar
    table: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{core}.multiarray", "scalar")] = scalar
        table[(f"{core}.numeric", "_frombuffer")] = frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    table[("_codecs", "encode")] = codecs.encode
    return table


_ALLOWED = _numpy_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, strings, numbers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def load(path: str | Path, what: str) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; a one-line UserError if it is not a plain data pickle."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path} ({brief(e)}); check the path and its permissions") from None
    except pickle.UnpicklingError as e:
        if "refusing global" in str(e):
            raise UserError(f"{what} {path} is not a plain data pickle ({brief(e)}); it was not loaded: replace it "
                            "with the original file") from None
        raise UserError(f"{what} {path} is truncated or corrupt ({brief(e)}); re-download it") from None
    except (EOFError, ValueError, TypeError, AttributeError, LookupError, MemoryError, UnicodeError,
            OverflowError, RecursionError, struct.error) as e:
        raise UserError(f"{what} {path} is truncated or corrupt ({brief(e)}); re-download it") from None


def str_keys(obj: Any, path: str | Path, what: str) -> dict[str, Any]:
    """``obj`` as a dict with ``str`` keys (``bytes`` keys decoded as latin-1); UserError if not a dict."""
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} should hold a dict, found {type(obj).__name__}; is it the right file?")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(k, bytes):
            k = k.decode("latin-1")
        if not isinstance(k, str):
            raise UserError(f"{what} {path} has a non-string key {k!r}; is it the right file?")
        out[k] = v
    return out


def as_text(value: Any) -> str:
    """A pickled name (``str``, ``bytes`` or numpy string) as ``str``."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)
