"""CRC-32C (Castagnoli), the checksum of the TFRecord framing, in pure Python + numpy.

CRC-32C is the reflected CRC with polynomial ``0x1EDC6F41`` (reversed ``0x82F63B78``), initial
value ``0xFFFFFFFF`` and final XOR ``0xFFFFFFFF``; ``crc32c(b"123456789") == 0xE3069283``.

With the byte table ``T[x]`` (the register after shifting byte ``x`` through a zero register) one
byte ``b`` updates the register ``r`` as ``r' = T[(r ^ b) & 0xFF] ^ (r >> 8)``. The update is linear
over GF(2) in ``(r, b)``, hence for a message ``A || B``::

    raw(r, A || B) = raw(raw(r, A), B)        raw(r, B) = Z^len(B) r  ^  raw(0, B)

where ``Z^n`` is the linear map "feed n zero bytes". Long inputs are therefore cut into ``K`` lanes
of ``L`` bytes: numpy runs the byte recurrence on all lanes at once (``L`` vector steps), and the
lane results are chained with ``Z^L`` (computed by repeated squaring of the 32x32 bit matrix, and
applied through four 256-entry tables). Short inputs use the plain byte loop.

If the optional PyPI package ``google_crc32c`` or ``crc32c`` is importable it is used instead
(same values, C speed); no dependency is added.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

__all__ = ["crc32c", "crc32c_python", "mask", "unmask", "masked_crc32c", "BACKEND"]

POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
#: Inputs shorter than this use the byte loop (the numpy path has a fixed cost of ~0.1 ms).
_NUMPY_MIN = 2048


def _table() -> list[int]:
    table = []
    for byte in range(256):
        r = byte
        for _ in range(8):
            r = (r >> 1) ^ POLY if r & 1 else r >> 1
        table.append(r)
    return table


_TABLE = _table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)


def _raw_python(register: int, data: bytes | memoryview) -> int:
    """The register after feeding ``data`` one byte at a time (no initial/final XOR)."""
    table = _TABLE
    for b in bytes(data):
        register = table[(register ^ b) & 0xFF] ^ (register >> 8)
    return register


def crc32c_python(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C of ``data`` by the byte loop only (the reference the fast paths are tested against).

    ``value`` continues a previous CRC: ``crc32c(b, crc32c(a)) == crc32c(a + b)``.
    """
    return _raw_python(value ^ _U32, data) ^ _U32


def _apply(columns: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """GF(2) matrix (``columns[k]`` = image of bit ``k``) times each uint32 of ``vectors``."""
    bits = (vectors[:, None] >> np.arange(32, dtype=np.uint32)) & np.uint32(1)
    return np.bitwise_xor.reduce(np.where(bits.astype(bool), columns[None, :], np.uint32(0)), axis=1)


@functools.lru_cache(maxsize=1)
def _zero_byte_columns() -> np.ndarray:
    """The matrix ``Z`` of feeding one zero byte: ``r -> T[r & 0xFF] ^ (r >> 8)``."""
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
    return _TABLE_NP[basis & np.uint32(0xFF)] ^ (basis >> np.uint32(8))


@functools.lru_cache(maxsize=512)
def _shift_tables(length: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Four byte tables applying ``Z^length`` to a register: ``t0[r & 255] ^ t1[...] ^ t2[...] ^ t3[r >> 24]``."""
    result = np.uint32(1) << np.arange(32, dtype=np.uint32)  # identity
    power = _zero_byte_columns()
    n = length
    while n:
        if n & 1:
            result = _apply(power, result)  # power o result
        power = _apply(power, power)
        n >>= 1
    values = np.arange(256, dtype=np.uint32)
    tables = []
    for p in range(4):
        tables.append([int(v) for v in _apply(result, values << np.uint32(8 * p))])
    return tables[0], tables[1], tables[2], tables[3]


def _raw_numpy(register: int, data: bytes | memoryview) -> int:
    n = len(data)
    lanes = max(16, int(np.sqrt(n)) & ~7)
    length = n // lanes
    head = n - lanes * length
    register = _raw_python(register, data[:head])
    block = np.frombuffer(data, dtype=np.uint8, offset=head).reshape(lanes, length).T.astype(np.uint32)
    regs = np.zeros(lanes, dtype=np.uint32)
    table = _TABLE_NP
    low = np.uint32(0xFF)
    eight = np.uint32(8)
    for row in block:
        regs = table[(regs ^ row) & low] ^ (regs >> eight)
    t0, t1, t2, t3 = _shift_tables(length)
    for lane in regs.tolist():
        register = t0[register & 0xFF] ^ t1[(register >> 8) & 0xFF] ^ t2[(register >> 16) & 0xFF] \
            ^ t3[register >> 24] ^ lane
    return register


def _crc32c_numpy(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    if len(view) < _NUMPY_MIN:
        return _raw_python(value ^ _U32, view) ^ _U32
    return _raw_numpy(value ^ _U32, view) ^ _U32


def _accelerated() -> tuple[Callable[[bytes, int], int] | None, str]:
    try:
        import google_crc32c  # type: ignore[import-not-found]

        return (lambda data, value=0: google_crc32c.extend(value, bytes(data))), "google_crc32c"
    except ImportError:
        pass
    try:
        import crc32c as _crc32c  # type: ignore[import-not-found]

        return (lambda data, value=0: _crc32c.crc32c(bytes(data), value)), "crc32c"
    except ImportError:
        return None, "numpy"


_FAST, BACKEND = _accelerated()


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C of ``data`` (continuing from ``value``, a previous result); ``crc32c(b"123456789") == 0xE3069283``.

    :data:`BACKEND` says which implementation runs: ``"google_crc32c"``, ``"crc32c"`` or ``"numpy"``.
    """
    if _FAST is not None:
        return _FAST(data, value)
    return _crc32c_numpy(data, value)


def mask(crc: int) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits, plus ``0xA282EAD8``, mod 2^32."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    """Inverse of :func:`mask`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot << 15) | (rot >> 17)) & _U32


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """``mask(crc32c(data))``: what a TFRecord stores after the length and after the payload."""
    return mask(crc32c(data))
