"""TFRecord files: framing, writing, an offset index and random access to one record.

A TFRecord file is a sequence of records, each framed as (little-endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | payload (length bytes) | uint32 masked_crc32c(payload)

with ``masked_crc32c(x) = ((c >> 15 | c << 17) + 0xA282EAD8) mod 2^32`` for ``c = crc32c(x)``
(:mod:`.crc`). Meta-Dataset payloads are serialized ``tf.train.Example`` protos with an ``image``
and a ``label`` feature (:mod:`.example`, re-exported here).

:class:`RecordFile` builds a per-file offset index once by walking the length fields (seek past
each payload; no payload is read) and then reads record ``i`` with one seek and one read, so
asking for one record never loads the class file. CRC verification (both CRCs of the records
read) is on by default; a damaged record is a one-line :class:`~innerloop.errors.UserError`
naming the file, the record index and the fix.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from innerloop.data.metadataset.crc import crc32c, mask, masked_crc32c, unmask
from innerloop.data.metadataset.example import (ExampleError, decode_example, decode_features, encode_example,
                                                encode_features)
from innerloop.errors import UserError

__all__ = ["crc32c", "mask", "unmask", "masked_crc32c", "encode_example", "encode_features", "decode_example",
           "decode_features", "frame", "write_records", "iter_records", "index_records", "RecordFile",
           "RecordIndex", "HEADER_BYTES", "FOOTER_BYTES"]

#: Bytes before a payload (length + its CRC) and after it (the payload CRC).
HEADER_BYTES, FOOTER_BYTES = 12, 4
#: Largest payload accepted (a Meta-Dataset image is at most a few MB; a bigger length is a corrupt file).
MAX_PAYLOAD = 1 << 30
_FIX = "re-create the records (e.g. 'innerloop data to-records ... --force') or re-download this source"


def frame(payload: bytes) -> bytes:
    """One framed record: length, masked CRC of the length bytes, ``payload``, masked CRC of the payload."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


def write_records(path: str | Path, payloads: Iterable[bytes]) -> int:
    """Write ``payloads`` as a TFRecord file (via a temporary file, then renamed); returns the record count."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with open(tmp, "wb") as f:
            for payload in payloads:
                f.write(frame(payload))
                count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


class RecordIndex:
    """Where each record of one file starts (``offsets``, of the length field) and its payload ``lengths``."""

    def __init__(self, offsets: np.ndarray, lengths: np.ndarray, size: int, mtime_ns: int):
        self.offsets = offsets
        self.lengths = lengths
        self.size = size
        self.mtime_ns = mtime_ns

    def __len__(self) -> int:
        return len(self.offsets)


def _corrupt(path: Path, index: int, what: str) -> UserError:
    return UserError(f"corrupt TFRecord file {path}, record {index}: {what}; {_FIX}")


def index_records(path: str | Path, *, verify: bool = True) -> RecordIndex:
    """Scan the length fields of ``path`` (reading 12 bytes per record) into a :class:`RecordIndex`.

    With ``verify`` each length's CRC is checked; a truncated file or a bad length is a one-line error.
    """
    path = Path(path)
    try:
        stat = path.stat()
        f = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"TFRecord file not found: {path}; is the records folder complete? {_FIX}") from None
    except OSError as e:
        raise UserError(f"cannot read TFRecord file {path} ({e.strerror or e})") from None
    size = stat.st_size
    offsets: list[int] = []
    lengths: list[int] = []
    with f:
        pos = 0
        while pos < size:
            f.seek(pos)
            header = f.read(HEADER_BYTES)
            i = len(offsets)
            if len(header) < HEADER_BYTES:
                raise _corrupt(path, i, f"file ends inside a record header (at byte {pos} of {size})")
            length, length_crc = struct.unpack("<QI", header)
            if verify and masked_crc32c(header[:8]) != length_crc:
                raise _corrupt(path, i, "length CRC mismatch")
            if length > MAX_PAYLOAD:
                raise _corrupt(path, i, f"implausible payload length {length}")
            end = pos + HEADER_BYTES + length + FOOTER_BYTES
            if end > size:
                raise _corrupt(path, i, f"file ends inside the record (needs {end} bytes, has {size})")
            offsets.append(pos)
            lengths.append(length)
            pos = end
    return RecordIndex(np.array(offsets, dtype=np.int64), np.array(lengths, dtype=np.int64), size,
                       stat.st_mtime_ns)


def _check_payload(path: Path, index: int, record: bytes, verify: bool) -> bytes:
    """The payload of one framed ``record`` (header + payload + footer), CRC-checked with ``verify``."""
    length, length_crc = struct.unpack("<QI", record[:HEADER_BYTES])
    if len(record) != HEADER_BYTES + length + FOOTER_BYTES:
        raise _corrupt(path, index, "record is shorter than its length field says (file changed since indexed?)")
    payload = record[HEADER_BYTES:HEADER_BYTES + length]
    if verify:
        if masked_crc32c(record[:8]) != length_crc:
            raise _corrupt(path, index, "length CRC mismatch")
        (payload_crc,) = struct.unpack("<I", record[HEADER_BYTES + length:])
        if masked_crc32c(payload) != payload_crc:
            raise _corrupt(path, index, "payload CRC mismatch")
    return payload


def iter_records(path: str | Path, *, verify: bool = True) -> Iterator[bytes]:
    """Every payload of ``path`` in file order (a sequential read; for random access use :class:`RecordFile`)."""
    path = Path(path)
    index = index_records(path, verify=verify)
    with open(path, "rb") as f:
        for i, (offset, length) in enumerate(zip(index.offsets.tolist(), index.lengths.tolist())):
            f.seek(offset)
            yield _check_payload(path, i, f.read(HEADER_BYTES + length + FOOTER_BYTES), verify)


class RecordFile:
    """Random access to the records of one TFRecord file.

    The offset index is built on first use (:func:`index_records`) and kept; the file is opened on
    first read and closed by :meth:`close` (or the ``with`` block). ``read(i)`` costs one seek and
    one read of that record only.
    """

    def __init__(self, path: str | Path, *, verify: bool = True, index: RecordIndex | None = None):
        self.path = Path(path)
        self.verify = verify
        self._index = index
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()

    @property
    def index(self) -> RecordIndex:
        if self._index is None:
            self._index = index_records(self.path, verify=self.verify)
        return self._index

    def __len__(self) -> int:
        return len(self.index)

    def read(self, i: int) -> bytes:
        """The payload of record ``i`` (CRC-checked when ``verify``)."""
        index = self.index
        n = len(index)
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range: {self.path} has {n} records")
        i = i % n
        offset, length = int(index.offsets[i]), int(index.lengths[i])
        with self._lock:
            if self._file is None:
                try:
                    self._file = open(self.path, "rb")
                except OSError as e:
                    raise UserError(f"cannot read TFRecord file {self.path} ({e.strerror or e}); {_FIX}") from None
            self._file.seek(offset)
            record = self._file.read(HEADER_BYTES + length + FOOTER_BYTES)
        return _check_payload(self.path, i, record, self.verify)

    def read_example(self, i: int) -> tuple[bytes, int]:
        """``(image bytes, label)`` of record ``i``; a payload that is not such an Example is a one-line error."""
        payload = self.read(i)
        try:
            return decode_example(payload)
        except ExampleError as e:
            raise _corrupt(self.path, i % len(self), f"not a tf.train.Example with 'image' and 'label' ({e})") \
                from None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> RecordFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
