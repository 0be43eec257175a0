"""Hostile-input corpus (issue 19, classes 4 and 5): unsafe archives and decompression bombs.

Each case of a corpus runs twice: through the lower-level function (a one-line UserError naming
the file; for archives nothing written outside the target and no partial extraction; for IDX
memory bounded by the header, not the stream; for images no pixels decoded before the size check)
and end to end through ``innerloop data download|prepare`` with
:func:`tests.faultkit.assert_clean_failure` (exit 2, one stderr line, no traceback, nothing changed
on disk). Archive cases run with tarfile's ``data`` filter removed, as on Python 3.10.0-3.10.11 /
3.11.0-3.11.3, so they prove innerloop's own member check suffices.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from innerloop.data import download, imaging, mnist, safe_pickle
from innerloop.data.download import Resource
from innerloop.errors import UserError
from tests.data.conftest import random_image
from tests.faultkit import assert_clean_failure, snapshot


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Only the local server or files may be fetched."""
    real = download.urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        url = request.full_url if hasattr(request, "full_url") else request
        assert url.startswith(("http://127.0.0.1:", "file://")), f"test tried to reach {url}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(download.urllib.request, "urlopen", guarded)


@pytest.fixture
def old_python_tarfile(monkeypatch):
    """tarfile as on Python < 3.10.12 / 3.11.4: no extraction filters, members extracted as they are."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    if hasattr(tarfile, "fully_trusted_filter"):  # 3.14+ would otherwise default to the data filter
        monkeypatch.setattr(tarfile.TarFile, "extraction_filter", staticmethod(tarfile.fully_trusted_filter))


def _one_line(err: pytest.ExceptionInfo, *words: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for word in words:
        assert word.lower() in msg.lower(), f"{word!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------------------------- archives

Entry = tuple[tarfile.TarInfo, bytes]


def _tar_entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, link, len(data), 0o644
    return info, data


def _write_tar(path: Path, entries: list[Entry]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _write_zip(path: Path, names: list[str], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hostile/ok.txt", "ok")
        for name in names:
            zf.writestr(name, "pwned")
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16  # S_IFLNK | 0777
            zf.writestr(info, "../../..")
    return path


def _symlink_chain(tmp: Path) -> list[Entry]:
    """``a/b -> ..``, ``a/b/c -> ..``, ...: each link looks local, together they climb three levels out."""
    links = ["a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e"]
    return ([_tar_entry("cifar-10-batches-py/ok", data=b"1")]
            + [_tar_entry(n, tarfile.SYMTYPE, link="..") for n in links]
            + [_tar_entry("a/b/c/d/e/pwned.txt", data=b"pwned")])


@dataclass(frozen=True)
class ArchiveCase:
    build: Callable[[Path], Path]  # writes the archive into the given folder, returns it
    member: str  # the member the error must name ({tmp}: the test's folder)
    match: str = "unsafe archive"


def _tar(entries: Callable[[Path], list[Entry]]) -> Callable[[Path], Path]:
    return lambda tmp: _write_tar(tmp / "cifar-10-python.tar.gz", entries(tmp))


def _truncated_tar(tmp: Path) -> Path:
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    full = _write_tar(tmp / "full.tar.gz", [_tar_entry("cifar-10-batches-py/data_batch_1", data=b"x" * 1000),
                                            _tar_entry("cifar-10-batches-py/data_batch_2", data=payload)])
    archive = tmp / "cifar-10-python.tar.gz"
    archive.write_bytes(full.read_bytes()[: full.stat().st_size * 3 // 4])
    full.unlink()
    return archive


ARCHIVES = {
    "tar-symlink-chain": ArchiveCase(_tar(_symlink_chain), "a/b"),
    "tar-symlink-inside": ArchiveCase(_tar(lambda t: [_tar_entry("d/ok", data=b"1"),
                                                      _tar_entry("d/alias", tarfile.SYMTYPE, link="ok")]), "d/alias"),
    "tar-hardlink": ArchiveCase(_tar(lambda t: [_tar_entry("d/ok", data=b"1"),
                                                _tar_entry("d/hard", tarfile.LNKTYPE, link="d/ok")]), "d/hard"),
    "tar-absolute": ArchiveCase(_tar(lambda t: [_tar_entry(f"{t}/abs-pwned.txt", data=b"pwned")]),
                                "{tmp}/abs-pwned.txt"),
    "tar-dotdot": ArchiveCase(_tar(lambda t: [_tar_entry("d/../../../pwned.txt", data=b"pwned")]),
                              "d/../../../pwned.txt"),
    "tar-device": ArchiveCase(_tar(lambda t: [_tar_entry("d/null", tarfile.CHRTYPE)]), "d/null"),
    "tar-fifo": ArchiveCase(_tar(lambda t: [_tar_entry("d/pipe", tarfile.FIFOTYPE)]), "d/pipe"),
    "tar-truncated": ArchiveCase(_truncated_tar, "cifar-10-python.tar.gz", "corrupt or truncated"),
    # fails half-way through writing (a file where a folder must go): no partial extraction may remain
    "tar-path-conflict": ArchiveCase(_tar(lambda t: [_tar_entry("d/x", data=b"1"), _tar_entry("d/x/y", data=b"2")]),
                                     "cifar-10-python.tar.gz", "corrupt or truncated"),
    "zip-dotdot": ArchiveCase(lambda t: _write_zip(t / "hostile.zip", ["hostile/../../../pwned.txt"]),
                              "hostile/../../../pwned.txt"),
    "zip-absolute": ArchiveCase(lambda t: _write_zip(t / "hostile.zip", [f"{t}/abs-pwned.txt"]),
                                "{tmp}/abs-pwned.txt"),
    "zip-symlink": ArchiveCase(lambda t: _write_zip(t / "hostile.zip", [], symlink="hostile/up"), "hostile/up"),
}


def test_the_symlink_chain_really_escapes_without_innerloops_check(tmp_path, old_python_tarfile):
    """Control: extracted by tarfile alone, as old Pythons did, the chain writes three levels above the target."""
    archive = _write_tar(tmp_path / "chain.tar.gz", _symlink_chain(tmp_path))
    target = tmp_path / "w" / "x" / "y" / "target"
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target)
    assert (tmp_path / "w" / "pwned.txt").read_bytes() == b"pwned"


@pytest.mark.parametrize("case", ARCHIVES.values(), ids=ARCHIVES.keys())
def test_unsafe_archive_is_refused_by_innerloops_own_check(tmp_path, old_python_tarfile, case):
    archive = case.build(tmp_path)
    target = tmp_path / "w" / "x" / "y" / "target"
    target.parent.mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(UserError) as err:
        download.safe_extract(archive, target)
    msg = _one_line(err, case.match, case.member.format(tmp=tmp_path))
    if case.match == "unsafe archive":
        assert "download it again from its canonical source" in msg
    assert snapshot(tmp_path) == before  # no target, nothing escaped, no temporary folder left


@pytest.mark.parametrize("case", ARCHIVES.values(), ids=ARCHIVES.keys())
def test_unsafe_archive_download_fails_cleanly(tmp_path, server, monkeypatch, old_python_tarfile, case):
    archive = case.build(server.directory)
    sha = download.sha256_file(archive)  # the user vouched for this file: the checksum alone cannot save us
    if archive.suffix == ".zip":  # no shipped dataset extracts a zip: one that does
        monkeypatch.setitem(download.DATASETS, "hostile", [Resource("https://example.invalid/hostile.zip",
                                                                    "hostile.zip", sha, extract=True)])
        name = "hostile"
    else:
        name = "cifar10"
    root = tmp_path / "w" / "x" / "data"
    root.parent.mkdir(parents=True)
    argv = ["data", "download", name, "--root", root, "--mirror", server.url, "--sha256", sha]
    res = assert_clean_failure(argv, tmp_path, match=case.match)
    assert case.member.format(tmp=server.directory) in res.err
    assert not root.exists()


def test_a_safe_archive_still_extracts(tmp_path, old_python_tarfile):
    archive = _write_tar(tmp_path / "ok.tar.gz", [_tar_entry("d", tarfile.DIRTYPE),
                                                  _tar_entry("d/e/f.txt", data=b"hello")])
    placed = download.safe_extract(archive, tmp_path / "out")
    assert placed == [tmp_path / "out" / "d"] and (tmp_path / "out" / "d" / "e" / "f.txt").read_bytes() == b"hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.tar.gz", "out"]


# ------------------------------------------------------------------------------------------ MNIST IDX

_SPLIT = 60000 * 28 * 28  # what the bomb's header declares
_IDX3 = b"\0\0\x08\x03"


def _idx_header(*dims: int) -> bytes:
    return _IDX3[:3] + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _gzip_stream(header: bytes, zero_bytes: int) -> bytes:
    """``header`` then ``zero_bytes`` zeros, gzipped chunk by chunk (a ~100 KB file for 100 MB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(header)]
    chunk = bytes(1 << 20)
    for _ in range(zero_bytes // len(chunk)):
        parts.append(packer.compress(chunk))
    parts.append(packer.compress(bytes(zero_bytes % len(chunk))))
    return b"".join(parts) + packer.flush()


@pytest.fixture(scope="module")
def idx_bomb() -> bytes:
    """A 60000x28x28 header followed by 48 MiB more zeros than it declares (96 MB expanded, ~100 KB packed)."""
    return _gzip_stream(_idx_header(60000, 28, 28), _SPLIT + (48 << 20))


IDX_CASES = {
    "idx-gz-bomb": (None, "trailing bytes"),
    "idx-bad-magic": (gzip.compress(b"\x12\x34\x08\x03" + bytes(100)), "bad magic"),
    "idx-truncated": (gzip.compress(_idx_header(60000, 28, 28) + bytes(1000)), "truncated"),
    "idx-huge-claim": (gzip.compress(_idx_header(2**31, 28, 28)), "limit"),
    "idx-not-mnist-like": (gzip.compress(_idx_header(10, 5000, 5000)), "not an MNIST-like file"),
}


def _idx_bytes(case: str, bomb: bytes) -> bytes:
    data = IDX_CASES[case][0]
    return bomb if data is None else data


@pytest.mark.parametrize("case", IDX_CASES)
def test_hostile_idx_is_refused_with_bounded_memory(tmp_path, idx_bomb, case):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(_idx_bytes(case, idx_bomb))
    tracemalloc.start()
    try:
        with pytest.raises(UserError) as err:
            mnist.read_idx(path, 3, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _one_line(err, IDX_CASES[case][1], str(path), "innerloop data download mnist")
    assert peak < _SPLIT + (8 << 20), f"peak {peak / 2**20:.0f} MiB: memory follows the stream, not the header"


@pytest.mark.parametrize("case", IDX_CASES)
def test_hostile_idx_prepare_fails_cleanly(tmp_path, idx_bomb, case):
    root = tmp_path / "mnist"
    root.mkdir()
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(_idx_bytes(case, idx_bomb))
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", 3) + b"\1\2\3"))
    argv = ["data", "prepare", "mnist", "--root", root, "--split", "test", "--cache-dir", tmp_path / "cache"]
    assert_clean_failure(argv, tmp_path, match=IDX_CASES[case][1])


def test_a_well_formed_idx_stream_still_reads(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(_idx_header(2, 3, 4) + data.tobytes()))
    assert np.array_equal(mnist.read_idx(path, 3), data)


# ------------------------------------------------------------------------------------------- images

def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature, IHDR for ``width`` x ``height`` greyscale, a tiny IDAT and IEND: no pixels behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _truncated_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(random_image(np.random.default_rng(0), 64, 64)).save(buf, "PNG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


IMAGE_CASES = {
    "png-30000x30000": (_png_claiming(30000, 30000), "decompression bomb"),  # Pillow's DecompressionBombError
    "png-10000x10000": (_png_claiming(10000, 10000), "decompression bomb"),  # Pillow's warning, raised
    "png-9000x9000": (_png_claiming(9000, 9000), "pixel limit"),  # under Pillow's limits, over innerloop's
    "png-truncated": (_truncated_png(), "truncated"),
    "png-not-an-image": (b"this is not an image, whatever its name says\n" * 10, "not an image"),
}


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_hostile_image_is_a_one_line_error(tmp_path, monkeypatch, case):
    data, match = IMAGE_CASES[case]
    path = tmp_path / "img.png"
    path.write_bytes(data)
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: loads.append(im.size) or real_load(im))
    for source in (path, data):
        with pytest.raises(UserError) as err:
            imaging.decode(source, str(path), mode="RGB", size=(84, 84))
        _one_line(err, match, str(path), "re-download or replace")
    if case.startswith("png-") and case[4].isdigit():
        assert loads == [], "pixels were decoded (allocated) before the claimed size was checked"


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_hostile_image_prepare_fails_cleanly(tmp_path, case):
    data, match = IMAGE_CASES[case]
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "a.png").write_bytes(data)
    argv = ["data", "prepare", "folder", "--root", root, "--cache-dir", tmp_path / "cache"]
    assert_clean_failure(argv, tmp_path, match=match)


def test_omniglot_zip_member_claiming_a_huge_size_is_not_read(tmp_path):
    """A zip member whose directory entry claims 3 GB is refused before zipfile allocates anything."""
    archive = tmp_path / "omniglot" / "images_background.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images_background/Latin/character01/0001_01.png", b"tiny")
    data = bytearray(archive.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 3_000_000_000)  # uncompressed size in the directory
    archive.write_bytes(bytes(data))
    argv = ["data", "prepare", "omniglot", "--root", archive.parent, "--split", "train", "--option", "protocol=lake",
            "--cache-dir", tmp_path / "cache"]
    assert_clean_failure(argv, tmp_path, match="3,000,000,000 bytes")


# ------------------------------------------------------------------------------------------- pickles

PICKLE_CASES = {
    "pickle-os-system": (b"cos\nsystem\n(Vtouch PWNED\ntR.", "not a plain data pickle"),
    "pickle-codec-lookup": (b"c_codecs\nencode\n(Vx\nVno-such-codec\ntR.", "truncated or corrupt"),
    "pickle-codec-surrogate": (b"c_codecs\nencode\n(V\\ud800\nVutf-8\ntR.", "truncated or corrupt"),
    "pickle-bytes-claiming-4gb": (b"\x80\x03B" + struct.pack("<I", 0xFFFFFFF0) + b"abc", "truncated or corrupt"),
    "pickle-not-a-pickle": (b"\x89PNG\r\n\x1a\n" + bytes(40), "truncated or corrupt"),
}


@pytest.mark.parametrize("case", PICKLE_CASES)
def test_hostile_pickle_is_a_one_line_error(tmp_path, monkeypatch, case):
    data, match = PICKLE_CASES[case]
    path = tmp_path / "test_batch"
    path.write_bytes(data)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as err:
        safe_pickle.load(path, "CIFAR-10 batch")
    _one_line(err, match, str(path))
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("case", PICKLE_CASES)
def test_hostile_pickle_prepare_fails_cleanly(tmp_path, case):
    data, match = PICKLE_CASES[case]
    root = tmp_path / "cifar"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(data)
    argv = ["data", "prepare", "cifar10", "--root", root, "--split", "test", "--cache-dir", tmp_path / "cache"]
    assert_clean_failure(argv, tmp_path, match=match, cwd=tmp_path)
    assert not (tmp_path / "PWNED").exists()

